"""The block language: values it computes, and the located errors it gives. No TensorFlow."""

from __future__ import annotations

import textwrap
import time

import pytest

from archbuilder.errors import SpecError
from archbuilder.layers import LAYER_TYPES
from archbuilder.spec import expressions
from archbuilder.spec.expressions import ExpressionError, evaluate, make_divisible
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, SHIPPED_SPECS, spec_problem_lines

LANGUAGE = REPO / "tests" / "specs" / "block_language.yaml"

HEAD = "name: t\ninput: {shape: [16, 16, 3]}\nclasses: 4\n"


def block_spec(blocks: str, stages: str, extra: str = "") -> str:
    return HEAD + extra + "blocks:\n" + textwrap.indent(textwrap.dedent(blocks), "  ") + "stages:\n" + \
        textwrap.indent(textwrap.dedent(stages), "  ")


# ---------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, names, value", [
    ("filters * 4", {"filters": 16}, 64),
    ("max(1, int(in_channels * se_ratio))", {"in_channels": 30, "se_ratio": 0.25}, 7),
    ("make_divisible(in_channels * expand, 8)", {"in_channels": 13, "expand": 6}, 80),
    ("widths[2] // 2", {"widths": [1, 2, 64]}, 32),
    ("stride != 1 or in_channels != filters * 4", {"stride": 1, "in_channels": 64, "filters": 16}, False),
    ("'a' if x > 2 else 'b'", {"x": 3}, "a"),
    ("ceil(2.1) + floor(2.9) + round(2.5) + abs(-1)", {}, 3 + 2 + 2 + 1),
    ("2 ** 10 % 1000", {}, 24),
    ("not (x == 1) and x < 3", {"x": 2}, True),
])
def test_expression_values(text, names, value):
    assert evaluate(text, names) == value


# keras.applications' _make_divisible, and the published MobileNetV2 / EfficientNet widths.
@pytest.mark.parametrize("value, expected", [(32 * 0.35, 16), (24 * 1.4, 32), (16 * 0.35, 8), (1280 * 1.1, 1408),
                                             (96 * 0.75, 72), (320 * 1.4, 448), (3.9, 8)])
def test_make_divisible_is_the_mobilenet_rule(value, expected):
    assert make_divisible(value, 8) == expected


@pytest.mark.parametrize("text, message", [
    ("1 / (x - 2)", "division by zero"),
    ("2 ** 10 ** 10", "a value exceeds 9,007,199,254,740,992"),
    ("10 ** 20", "a value exceeds"),
    ("y + 1", "undefined name 'y'"),
    ("__import__('os').system('true')", "unknown function '__import__('os').system'"),
    ("__import__('os')", "unknown function '__import__'"),
    ("x.real", "'x.real' is not allowed"),
    ("[i for i in range(9)]", "is not allowed"),
    ("(lambda: 1)()", "unknown function"),
    ("x[1:2]", "slices are not allowed"),
    ("x +", "syntax error"),
    ("-" * 100 + "1", "too complex"),
    ("1" + " + 1" * 300, "longer than"),
    ("(-8) ** 0.5", "not a real number"),
    ("'a' * 1000", "needs numbers"),
    ("int(1e400)", "a value exceeds"),
    ("min(x)", "min() takes 2 to 20 arguments, got 1"),  # was Python's "'int' object is not iterable"
])
def test_bad_expressions_are_refused_cleanly(text, message):
    start = time.process_time()  # CPU time: the work's cost, however loaded the machine
    with pytest.raises(ExpressionError) as caught:
        evaluate(text, {"x": 2})
    assert message in str(caught.value)
    assert time.process_time() - start < 0.5  # bounded before computing, never a hang


def test_errors_quote_the_values_used():
    with pytest.raises(ExpressionError) as caught:
        expressions.evaluate_explained("filters // (groups - 1)", {"filters": 64, "groups": 1, "other": 5})
    assert str(caught.value) == "'filters // (groups - 1)': division by zero (with filters=64, groups=1)"


# ---------------------------------------------------------------------------------------------
# What blocks compute
# ---------------------------------------------------------------------------------------------


def nodes_of(checked, group):
    return [n for n in checked.plan.nodes if n.group == group]


def test_block_language_spec_values():
    checked = load_checked_spec(LANGUAGE)
    # stride_on: last puts the stage's stride on its last block (4x4 stays 4x4 in res4a).
    assert nodes_of(checked, "res4a")[-1].out_shape == (4, 4, 16) and nodes_of(checked, "res4b")[-1].out_shape == (1, 1, 24)
    # The residual add only where `when:` holds: same channels, stride 1.
    assert [n.group for n in checked.plan.nodes if n.kind == "add"] == ["res2a", "res3b"]
    # A stage parameter given as an expression is evaluated per block (16 + 8 * block_index).
    assert [nodes_of(checked, g)[-1].out_shape[-1] for g in ("res4a", "res4b")] == [16, 24]
    # expand: 1 skips the expansion layers; se_ratio: 0 skips the nested block.
    assert [n.kind for n in nodes_of(checked, "res2a")][:3] == ["depthwise_conv", "batch_norm", "activation"]
    assert "multiply" not in [n.kind for n in nodes_of(checked, "res2a")]
    assert "multiply" in [n.kind for n in nodes_of(checked, "res3a")]
    # The nested squeeze_excite: max(1, int(channels * ratio)) with channels = the block's in_channels, 16.
    squeeze = [n for n in nodes_of(checked, "res3a") if n.kind == "conv"][1]
    assert squeeze.out_shape == (1, 1, 4)
    # drop_path: the block's share, linear in block_number as timm: 0.2 * k / (5 - 1).
    rates = [(n.group, n.layer.rate) for n in checked.plan.nodes if n.kind == "drop_path"]
    assert rates == [("res2a", 0.0), ("res3b", pytest.approx(0.2 * 2 / 4))]
    assert checked.plan.nodes[2].name == "stem_conv" and checked.plan.nodes[-1].name == "predictions_4"


def test_naming_schemes_pick_their_pattern():
    notebook = load_checked_spec(LANGUAGE)
    keras = load_checked_spec(LANGUAGE, ["defaults.naming=keras"])
    assert "dw2a" in [n.name for n in notebook.plan.nodes]
    keras_names = [n.name for n in keras.plan.nodes]
    assert "block3a_expand_conv" in keras_names and "block2a_dwconv" in keras_names and "dw2a" not in keras_names
    assert keras.plan.total_params == notebook.plan.total_params


def test_width_and_depth_multipliers():
    base = load_checked_spec(LANGUAGE)
    wide = load_checked_spec(LANGUAGE, ["multipliers.width=1.4", "multipliers.depth=2.0"])
    # make_divisible(16 * 1.4, 8) = 24 for the stem (explicit) and the `scale: width` param `out`;
    # repeats 1, 2, 2 become ceil(2 * r) = 2, 4, 4.
    assert wide.plan.nodes[2].out_shape[-1] == 24
    assert [g for g, _, _ in wide.plan.groups()].count("res3d") == 1
    assert len({n.group for n in wide.plan.nodes if n.path[:1] == ("stages",)}) == 10
    assert nodes_of(wide, "res2a")[-1].out_shape[-1] == 24 and nodes_of(base, "res2a")[-1].out_shape[-1] == 16
    narrow = load_checked_spec(LANGUAGE, ["multipliers.depth=0.5"])  # ceil(0.5) = 1, ceil(1) = 1
    assert len({n.group for n in narrow.plan.nodes if n.path[:1] == ("stages",)}) == 3


def test_variables_are_set_from_the_command_line():
    checked = load_checked_spec(LANGUAGE, ["variables.stem_width=40"])
    assert checked.plan.nodes[2].out_shape[-1] == 40


def test_imports_and_library_locations(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mine.yaml").write_text(textwrap.dedent("""\
        blocks:
          double:
            params: {filters: {type: int, min: 1}}
            layers:
              - {type: conv, filters: "filters * 2", kernel: 1}
              - {type: conv, filters: "filters * 2 // zero", kernel: 1}
        """))
    spec = tmp_path / "net.yaml"
    spec.write_text(HEAD + "imports: [lib/mine.yaml]\nvariables: {zero: 0}\nstages:\n  - {block: double, filters: 4}\n")
    lines = spec_problem_lines(spec, spec.read_text())
    assert lines == [
        f"{tmp_path / 'lib' / 'mine.yaml'}:6:31: blocks.double.layers.1.filters: stage 2 block a: "
        f"'filters * 2 // zero': division by zero (with filters=4, zero=0); in block 'double' used by stages.0 at {spec}:7:5"
    ]
    checked = load_checked_spec(spec, ["variables.zero=1"])
    assert [n.out_shape for n in checked.plan.nodes[1:]] == [(16, 16, 8), (16, 16, 8)]


# ---------------------------------------------------------------------------------------------
# Located errors: one line each, file:line:col, both lines for an error inside a block
# ---------------------------------------------------------------------------------------------

SE = """\
se:
  params: {ratio: {type: float, default: 0.25, min: 0.0, max: 1.0}}
  layers:
    - {type: global_average_pool, keepdims: true}
    - {type: conv, filters: "max(1, int(in_channels * ratio))", kernel: 1}
    - {type: conv, filters: in_channels, kernel: 1, id: gate}
    - {type: multiply, from: [input, gate]}
"""

CASES = {  # name: (blocks, stages, the expected lines)
    "undefined_name": (
        "b:\n  layers:\n    - {type: conv, filters: fitlers, kernel: 1}\n", "- {block: b}\n",
        ["{f}:7:31: blocks.b.layers.0.filters: undefined name 'fitlers' in 'fitlers'; names: block_index, block_number, "
         "classes, depth, drop_path, drop_path_rate, in_channels, in_height, in_width, num_blocks, repeats, stage_index, width"]),
    "expression_syntax": (
        "b:\n  layers:\n    - {type: conv, filters: 'in_channels *', kernel: 1}\n", "- {block: b}\n",
        ["{f}:7:31: blocks.b.layers.0.filters: syntax error in expression 'in_channels *' (invalid syntax) "
         "(received: 'in_channels *')"]),
    "value_beyond_real_sizes": (
        "b:\n  layers:\n    - {type: conv, filters: 'in_channels * 2 ** 60', kernel: 1}\n", "- {block: b}\n",
        ["{f}:7:31: blocks.b.layers.0.filters: stage 2 block a: 'in_channels * 2 ** 60': a value exceeds "
         "9,007,199,254,740,992 (2 ** 60) (with in_channels=3); in block 'b' used by stages.0 at {f}:9:5"]),
    "non_positive_result": (
        "b:\n  layers:\n    - {type: conv, filters: 'in_channels - 3', kernel: 1}\n", "- {block: b}\n",
        ["{f}:7:31: blocks.b.layers.0.filters: stage 2 block a: 'in_channels - 3' = 0: input should be greater than 0 "
         "(with in_channels=3); in block 'b' used by stages.0 at {f}:9:5"]),
    "uses_itself": (
        "a:\n  layers:\n    - {block: a}\n", "- {block: a}\n",
        ["{f}:7:17: blocks.a.layers.0.block: block type 'a' uses itself: a -> a"]),
    "uses_itself_through_another": (
        "a:\n  layers:\n    - {block: b}\nb:\n  layers:\n    - {type: flatten}\n    - {block: a}\n", "- {block: a}\n",
        ["{f}:7:17: blocks.a.layers.0.block: block type 'b' uses itself: b -> a -> b",
         "{f}:11:17: blocks.b.layers.1.block: block type 'a' uses itself: a -> b -> a"]),
    "unknown_and_missing_params": (
        SE, "- {block: se, ration: 0.5}\n- {block: sse}\n",
        ["{f}:13:17: stages.0.ration: block type 'se' has no parameter 'ration'; did you mean 'ratio'? "
         "(its parameters: ratio; stage keys: block, repeats, stride, stride_on, label, id)",
         "{f}:14:13: stages.1.block: unknown block type 'sse'; did you mean 'se'? valid types: basic, bottleneck, se"]),
    "param_out_of_bounds": (
        SE, "- {block: se, ratio: 1.5}\n",
        ["{f}:13:24: stages.0.ratio: block type 'se' parameter 'ratio' must be ≤ 1 (received 1.5)"]),
    "from_a_later_layer": (
        "b:\n  layers:\n    - {type: add, from: [input, later]}\n    - {type: flatten, id: later}\n", "- {block: b}\n",
        ["{f}:7:27: blocks.b.layers.0.from: from: 'later' is a later layer; a layer takes only earlier layers"]),
    "from_an_unknown_id": (
        "b:\n  layers:\n    - {type: add, from: [input, nowhere]}\n", "- {block: b}\n",
        ["{f}:7:27: blocks.b.layers.0.from: from: 'nowhere' is not the id of an earlier layer (ids so far: input)"]),
    "shape_error_names_both_lines": (
        "b:\n  layers:\n    - {type: conv, filters: 8, kernel: 1, id: c}\n    - {type: add, from: [input, c]}\n",
        "- {block: b}\n",
        ["{f}:8:9: blocks.b.layers.1: stage 2 block a: add needs inputs of one shape; received 16x16x3 and 16x16x8; "
         "in block 'b' used by stages.0 at {f}:10:5"]),
    "reserved_parameter_name": (
        "b:\n  params: {in_channels: {type: int}}\n  layers:\n    - {type: flatten}\n", "- {block: b}\n",
        ["{f}:6:13: blocks.b.params: parameter name 'in_channels' is reserved (the network provides it)"]),
    "parameter_named_like_a_call_key": (  # `label: 5` set the stage's label; the parameter never got it
        "b:\n  params: {label: {type: int, default: 2}}\n  layers:\n    - {type: flatten}\n", "- {block: b, label: 5}\n",
        ["{f}:6:13: blocks.b.params: parameter name 'label' is a key of a stage or block call "
         "(from, id, label, stride_on, when), so no call could give it; choose another"]),
    "parameter_named_like_a_python_keyword": (
        "b:\n  params: {lambda: {type: int, default: 2}}\n  layers:\n    - {type: flatten}\n", "- {block: b}\n",
        ["{f}:6:13: blocks.b.params: parameter name 'lambda' is a Python keyword, which an expression cannot name; "
         "choose another"]),
    "an_invalid_block_is_not_also_unknown_where_used": (  # a body's call of it said "unknown block type 'p'"
        "p:\n  layers:\n    - {type: add, from: [-1, q]}\nw:\n  layers:\n    - {block: p}\n",
        "- {block: w}\n- {block: p}\n",
        ["{f}:7:27: blocks.p.layers.0.from: input should be a valid string (received: [-1, q])",
         "{f}:7:28: blocks.p.layers.0.from.0: input should be a valid string (received: -1)"]),
    "bad_default": (
        "b:\n  params: {k: {type: int, default: 0, min: 1}}\n  layers:\n    - {type: flatten}\n", "- {block: b}\n",
        ["{f}:6:38: blocks.b.params.k.default: must be ≥ 1 (received 0)"]),
    "name_pattern_gives_a_bad_name": (
        "b:\n  layers:\n    - {type: flatten, name: \"x{'a b'}\"}\n", "- {block: b}\n",
        ["{f}:7:31: blocks.b.layers.0.name: stage 2 block a: name 'x{{'a b'}}' gives 'xa b', which is not a layer name "
         "(letters, digits, _ . -; at most 128 characters); in block 'b' used by stages.0 at {f}:9:5"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_block_language_errors(tmp_path, case):
    blocks, stages, expected = CASES[case]
    path = tmp_path / "spec.yaml"
    assert spec_problem_lines(path, block_spec(blocks, stages)) == [line.format(f=path) for line in expected]


def test_blocks_nesting_beyond_the_bound_is_refused(tmp_path):
    chain = "".join(f"b{i}:\n  layers:\n    - {{block: b{i + 1}}}\n" for i in range(9)) + \
        "b9:\n  layers:\n    - {type: flatten}\n"
    lines = spec_problem_lines(tmp_path / "spec.yaml", block_spec(chain, "- {block: b0}\n"))
    assert "blocks.b7.layers.0.block: blocks nest deeper than 8: b0 -> b1 -> b2 -> b3 -> b4 -> b5 -> b6 -> b7 -> b8" in lines[0]
    assert all("blocks nest deeper than 8" in line for line in lines)


def test_blocks_calling_blocks_many_times_are_checked_in_linear_time(tmp_path):
    # Each of b1..b7 calls the one below it twenty times: 20**7 chains of calls, seven blocks deep.
    # The check walked every chain (a 2 KB file kept `validate` busy for minutes); it now visits
    # each call once. A cycle and a chain nine deep in the same spec are still found.
    body = "[" + ", ".join(["{block: b%d}"] * 20) + "]"
    chain = "b0: {layers: [{type: flatten}]}\n" + "".join(
        f"b{i}: {{layers: {body % ((i - 1,) * 20)}}}\n" for i in range(1, 8))
    start = time.process_time()  # CPU time: the work's cost, however loaded the machine
    (tmp_path / "fan.yaml").write_text(block_spec(chain, "- {block: b0}\n"))
    assert [node.kind for node in load_checked_spec(tmp_path / "fan.yaml").plan.nodes] == ["input", "flatten"]
    deep = "".join(f"c{i}: {{layers: [{{block: c{i + 1}}}]}}\n" for i in range(9)) + "c9: {layers: [{type: flatten}]}\n"
    loop = "x: {layers: [{block: y}]}\ny: {layers: [{block: b0}, {block: x}]}\n"
    lines = spec_problem_lines(tmp_path / "mixed.yaml", block_spec(chain + deep + loop, "- {block: b0}\n"))
    assert time.process_time() - start < 5  # seconds; each spec takes ~0.1 s, the old walk minutes
    assert [line.split(": ", 2)[1:] for line in lines] == [
        ["blocks.c7.layers.0.block", "blocks nest deeper than 8: c0 -> c1 -> c2 -> c3 -> c4 -> c5 -> c6 -> c7 -> c8"],
        ["blocks.c8.layers.0.block", "blocks nest deeper than 8: c1 -> c2 -> c3 -> c4 -> c5 -> c6 -> c7 -> c8 -> c9"],
        ["blocks.x.layers.0.block", "block type 'y' uses itself: y -> x -> y"],
        ["blocks.y.layers.1.block", "block type 'x' uses itself: x -> y -> x"],
    ]


def test_a_library_reached_through_two_imports_adds_its_blocks_once(tmp_path):
    # A diamond (the spec imports `conv` and `stack`, `stack` imports `conv` too) is how libraries
    # share blocks; it was refused as "defined twice", naming one place twice. And twenty imports
    # of twenty imports ... six deep (20**5 reads before) read each file once.
    (tmp_path / "conv.yaml").write_text("blocks:\n  cb: {layers: [{type: conv, filters: 4, kernel: 3}]}\n")
    (tmp_path / "stack.yaml").write_text("imports: [conv.yaml]\nblocks:\n  twice: {layers: [{block: cb}, {block: cb}]}\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(HEAD + "imports: [conv.yaml, stack.yaml]\nstages: [{block: twice}, {block: cb}]\n")
    checked = load_checked_spec(spec)
    assert [node.kind for node in checked.plan.nodes].count("conv") == 3
    (tmp_path / "L0_0.yaml").write_text("blocks:\n  z: {layers: [{type: flatten}]}\n")
    for level in range(1, 7):  # twenty files a level, each importing every file of the level below
        below = ", ".join(f"L{level - 1}_{k}.yaml" for k in range(20 if level > 1 else 1))
        for k in range(20):
            (tmp_path / f"L{level}_{k}.yaml").write_text(f"imports: [{below}]\n")
    spec.write_text(HEAD + "imports: [L6_0.yaml]\nstages: [{block: z}]\n")
    start = time.process_time()
    assert "flatten" in [node.kind for node in load_checked_spec(spec).plan.nodes]
    assert time.process_time() - start < 5  # seconds; ~0.1 s, the old reads over three million files


def test_import_problems(tmp_path):
    (tmp_path / "a.yaml").write_text("imports: [b.yaml]\nblocks: {}\n")
    (tmp_path / "b.yaml").write_text("imports: [a.yaml]\n")
    (tmp_path / "c.yaml").write_text("name: not a library\nblocks: {}\n")
    (tmp_path / "d.yaml").write_text("blocks:\n  basic2: {layers: [{type: flatten}]}\n")
    (tmp_path / "e.yaml").write_text("blocks:\n  basic2: {layers: [{type: flatten}]}\n")
    spec = tmp_path / "spec.yaml"
    for imports, message in [
        ("[a.yaml]", "import cycle"),
        ("[missing.yaml]", "file not found"),
        ("[c.yaml]", "a block library holds only 'blocks:' and 'imports:' (received key 'name')"),
        ("[d.yaml, d.yaml]", "'d.yaml' is imported twice in this list (first as imports.0)"),
        ("[d.yaml, e.yaml]", "block type 'basic2' is defined twice (first at"),
        ("lib.yaml", "must be a list of file names"),
    ]:
        lines = spec_problem_lines(spec, HEAD + f"imports: {imports}\nstages: []\n")
        assert any(message in line for line in lines), (imports, lines)
        assert all(line.count(":") >= 3 for line in lines)  # every line located


def test_an_all_skipped_block_repeated_a_million_times_fails_fast():
    start = time.process_time()  # CPU time: the work's cost, however loaded the machine
    with pytest.raises(SpecError) as caught:
        load_checked_spec(LANGUAGE, ["stages.0.repeats=1000000"])
    assert "more than 20,000 layers" in str(caught.value)
    assert time.process_time() - start < 5


@pytest.mark.parametrize("name", ["architectures/se_resnet50.yaml", "tests/specs/block_language.yaml"])
def test_the_resolved_spec_a_run_folder_keeps_reads_back_the_same(tmp_path, name):
    # Run folders keep spec.yaml (training/prepare.py's _dump_spec); `--resume` and users read it back. It
    # once wrote `default: null` for required parameters, which then read as a bad default.
    from archbuilder.training.prepare import _dump_spec

    checked = load_checked_spec(REPO / name)
    (tmp_path / "spec.yaml").write_text(_dump_spec(checked.spec))
    again = load_checked_spec(tmp_path / "spec.yaml")
    assert [(n.name, n.kind, n.out_shape, n.params, n.inputs) for n in again.plan.nodes] == \
        [(n.name, n.kind, n.out_shape, n.params, n.inputs) for n in checked.plan.nodes]


def test_squeeze_excitation_adds_what_timm_seresnet50_adds():
    # shared/reference/REFERENCE.md: timm seresnet50 28,088,024 and torchvision resnet50 25,557,032
    # (both without conv bias, 1000 classes): SE adds 2,530,992 parameters. The SE layers here
    # are the same shapes (r = 16, biased 1x1 convolutions), independent of the head and of the
    # ResNet convolutions' bias, so the notebook ResNet-50 gains exactly as many.
    se = load_checked_spec(REPO / "architectures" / "se_resnet50.yaml").plan.total_params
    plain = load_checked_spec(REPO / "architectures" / "resnet50.yaml").plan.total_params
    assert se - plain == 28_088_024 - 25_557_032


@pytest.mark.parametrize("naming", ["notebook", "keras"])
@pytest.mark.parametrize("path", SHIPPED_SPECS + [LANGUAGE], ids=lambda p: str(p.relative_to(REPO)) if hasattr(p, "relative_to") else p)
def test_every_shipped_spec_plans_under_both_naming_schemes(path, naming):
    """Every block of every shipped file instantiates under both naming schemes with unique names
    (Keras needs them), and the scheme changes names only, never the network."""
    checked = load_checked_spec(path, [f"defaults.naming={naming}"])
    other = load_checked_spec(path, [f"defaults.naming={'keras' if naming == 'notebook' else 'notebook'}"])
    names = [n.name for n in checked.plan.nodes if n.name and n.shares is None]  # a shared node: its layer's name
    assert len(names) == len(set(names))
    assert [(n.kind, n.out_shape, n.params, n.inputs) for n in checked.plan.nodes] == \
        [(n.kind, n.out_shape, n.params, n.inputs) for n in other.plan.nodes]


def test_block_diagram_of_user_defined_blocks():
    from archbuilder.diagrams import block_diagram

    checked = load_checked_spec(LANGUAGE)
    diagram = block_diagram(checked.plan, checked.spec)
    boxes = {box.id: box for box in diagram.boxes}
    assert [b.id for b in diagram.boxes] == ["input", "stem", "res2a", "res3a", "res3b", "res4a", "res4b", "head"]
    assert boxes["res3a"].kind == "inverted_residual" and boxes["res3a"].stage == "stage 3"
    assert "out 24  se_ratio 0.25  stride 2" in boxes["res3a"].lines
    # The residual adds (res2a, res3b) take their block's input: identity shortcuts.
    assert [(a.tail, a.head, a.shortcut) for a in diagram.arrows if a.shortcut] == \
        [("stem", "res2a", "identity"), ("res3a", "res3b", "identity")]


# ---------------------------------------------------------------------------------------------
# Block parameters as the values of string and boolean fields; block calls in stem and head
# ---------------------------------------------------------------------------------------------

CONV_ACT = """\
conv_act:
  params:
    filters: {type: int, min: 1}
    act: {type: choice, choices: [relu, silu], default: relu}
    pad: {type: choice, choices: [valid, same], default: same}
    bias: {type: bool, default: true}
  layers:
    - {type: conv, filters: filters, kernel: 3, padding: pad, use_bias: bias}
    - {type: activation, activation: act}
"""


def test_choice_and_bool_parameters_as_field_values(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(block_spec(CONV_ACT, "- {block: conv_act, filters: 4}\n"
                                         "- {block: conv_act, filters: 4, act: silu, pad: valid, bias: false}\n"))
    nodes = load_checked_spec(path).plan.nodes
    convs = [n for n in nodes if n.kind == "conv"]
    activations = [n.layer.activation for n in nodes if n.kind == "activation"]
    assert activations == ["relu", "silu"]
    assert [n.layer.padding for n in convs] == ["same", "valid"]
    assert [n.out_shape for n in convs] == [(16, 16, 4), (14, 14, 4)]  # same keeps 16; valid 3x3 takes 2
    assert [n.params for n in convs] == [3 * 3 * 3 * 4 + 4, 3 * 3 * 4 * 4]  # the second has no bias


def test_a_run_folder_keeps_the_parameter_names_of_string_fields(tmp_path):
    from archbuilder.training.prepare import _dump_spec

    path = tmp_path / "spec.yaml"
    path.write_text(block_spec(CONV_ACT, "- {block: conv_act, filters: 4, act: silu}\n"))
    checked = load_checked_spec(path)
    dumped = _dump_spec(checked.spec)
    assert "activation: act" in dumped and "padding: pad" in dumped and "use_bias: bias" in dumped
    (tmp_path / "again.yaml").write_text(dumped)
    again = load_checked_spec(tmp_path / "again.yaml")
    assert [(n.kind, n.out_shape, n.params) for n in again.plan.nodes] == \
        [(n.kind, n.out_shape, n.params) for n in checked.plan.nodes]
    assert [n.layer.activation for n in again.plan.nodes if n.kind == "activation"] == ["silu"]


PARAMETER_FIELD_CASES = {
    "a_choice_the_field_does_not_take": (
        CONV_ACT.replace("choices: [relu, silu]", "choices: [relu, mish]"),
        ["{f}:13:40: blocks.conv_act.layers.1.activation: parameter 'act' may be 'mish', which activation does not "
         "take (activation takes 'relu', 'relu6', 'silu', 'swish', 'gelu', 'gelu_tanh', 'hard_swish', 'hard_sigmoid', "
         "'sigmoid', 'tanh', 'softmax', 'elu', 'selu', 'linear') (received: 'act')"]),
    "an_int_parameter_for_a_string_field": (
        CONV_ACT.replace("padding: pad", "padding: filters"),
        ["{f}:12:60: blocks.conv_act.layers.0.padding: parameter 'filters' is of type int; padding takes 'valid', "
         "'same', so only a choice (or, for true/false, a bool) parameter can stand for it (received: 'filters')"]),
    "a_choice_parameter_for_a_bool_field": (
        CONV_ACT.replace("use_bias: bias", "use_bias: act"),
        ["{f}:12:75: blocks.conv_act.layers.0.use_bias: parameter 'act' may be 'relu', 'silu', which use_bias does "
         "not take (use_bias takes true, false) (received: 'act')"]),
}


@pytest.mark.parametrize("case", sorted(PARAMETER_FIELD_CASES))
def test_parameters_as_field_values_are_checked_as_literals(tmp_path, case):
    blocks, expected = PARAMETER_FIELD_CASES[case]
    path = tmp_path / "spec.yaml"
    lines = spec_problem_lines(path, block_spec(blocks, "- {block: conv_act, filters: 4}\n"))
    assert lines == [line.format(f=path) for line in expected]


def test_a_name_that_is_no_parameter_is_refused_as_before(tmp_path):
    path = tmp_path / "spec.yaml"
    lines = spec_problem_lines(path, block_spec(CONV_ACT.replace("activation: act", "activation: actt"),
                                                "- {block: conv_act, filters: 4}\n"))
    assert len(lines) == 1 and "blocks.conv_act.layers.1.activation: input should be 'relu'" in lines[0], lines
    # and in the stem, where no block's parameters are in scope, a parameter's name is no value either
    lines = spec_problem_lines(path, HEAD + "stem: [{type: activation, activation: act}]\n")
    assert len(lines) == 1 and "stem.0.activation: input should be 'relu'" in lines[0], lines


def test_block_calls_in_stem_and_head(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + "blocks:\n" + textwrap.indent(CONV_ACT, "  ") +
                    "stem: [{block: conv_act, filters: 8, act: silu}]\n"
                    "head:\n  - {block: conv_act, filters: 4, pad: valid}\n  - {type: global_average_pool}\n"
                    "  - {type: dense, units: classes}\n")
    nodes = load_checked_spec(path).plan.nodes
    assert [(n.kind, n.group, n.out_shape) for n in nodes] == [
        ("input", "input", (16, 16, 3)), ("conv", "stem", (16, 16, 8)), ("activation", "stem", (16, 16, 8)),
        ("conv", "head", (14, 14, 4)), ("activation", "head", (14, 14, 4)), ("global_average_pool", "head", (4,)),
        ("dense", "head", (4,))]
    assert [n.layer.activation for n in nodes if n.kind == "activation"] == ["silu", "relu"]


def test_block_calls_in_stem_and_head_are_checked_like_a_stage(tmp_path):
    path = tmp_path / "spec.yaml"
    text = (HEAD + "blocks:\n" + textwrap.indent(CONV_ACT, "  ") +
            "stem: [{block: conv_actt, filters: 8}]\nhead: [{block: conv_act, filtres: 4}]\n")
    assert spec_problem_lines(path, text) == [line.format(f=path) for line in [
        "{f}:14:16: stem.0.block: unknown block type 'conv_actt'; did you mean 'conv_act'? "
        "valid types: basic, bottleneck, conv_act",
        "{f}:15:8: head.0: block type 'conv_act' needs parameter 'filters' (int)",
        "{f}:15:26: head.0.filtres: block type 'conv_act' has no parameter 'filtres'; did you mean 'filters'? "
        "(its parameters: act, bias, filters, pad)"]]


def test_an_item_with_neither_type_nor_block_says_both(tmp_path):
    path = tmp_path / "spec.yaml"
    lines = spec_problem_lines(path, HEAD + "head: [{axis: -1}]\n")
    assert lines == [f"{path}:4:8: head.0: missing key 'type' (a layer: one of {', '.join(LAYER_TYPES)}) "
                     "or 'block' (a block call)"]


WRAPPER = CONV_ACT + """\
wrapper:
  params: {act: {type: choice, choices: [silu, relu], default: silu}}
  layers:
    - {block: conv_act, filters: 4, act: act}
"""


def test_a_choice_parameter_is_passed_on_to_a_called_block(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(block_spec(WRAPPER, "- {block: wrapper}\n- {block: wrapper, act: relu}\n"))
    nodes = load_checked_spec(path).plan.nodes
    assert [n.layer.activation for n in nodes if n.kind == "activation"] == ["silu", "relu"]


def test_a_choice_passed_on_must_fit_the_called_block(tmp_path):
    path = tmp_path / "spec.yaml"
    lines = spec_problem_lines(path, block_spec(WRAPPER.replace("choices: [silu, relu]", "choices: [silu, mish]"),
                                                "- {block: wrapper}\n"))
    assert len(lines) == 1 and lines[0].endswith(
        "blocks.wrapper.layers.0.act: block type 'conv_act' parameter 'act' expects one of relu, silu; "
        "the parameter 'act' passed to it may be 'mish'"), lines


# ---------------------------------------------------------------------------------------------
# Ids across the network: stem, stages and head (issue 18 item 1)
# ---------------------------------------------------------------------------------------------


def test_the_head_takes_feature_maps_from_the_stem_and_a_stage():
    plan = load_checked_spec(REPO / "tests" / "specs" / "tiny_unet.yaml").plan
    by_index = {n.index: n for n in plan.nodes}
    concats = [n for n in plan.nodes if n.kind == "concat"]
    # up1 (8x8x8) with stage 2's output s1 (8x8x8); up2 (16x16x4) with the stem's e1 (16x16x4)
    assert [[(by_index[i].group, by_index[i].out_shape) for i in n.inputs] for n in concats] == [
        [("head", (8, 8, 8)), ("res2a", (8, 8, 8))], [("head", (16, 16, 4)), ("stem", (16, 16, 4))]]
    assert [n.out_shape for n in concats] == [(8, 8, 16), (16, 16, 8)]
    assert plan.output.out_shape == (16, 16, 2)


NETWORK_ID_CASES = {
    "unknown": ("head: [{type: flatten, from: nowhere}]\n",
                ["{f}:6:30: head.0.from: from: 'nowhere' is not the id of an earlier layer (ids so far: input, e1)"]),
    "later": ("head: [{type: flatten, from: last}, {type: flatten, id: last}]\n",
              ["{f}:6:30: head.0.from: from: 'last' is a later layer; a layer takes only earlier layers"]),
    "twice": ("head: [{type: flatten, id: e1}]\n",
              ["{f}:6:28: head.0.id: id 'e1' is already the id of stem.0; ids name one layer in the network"]),
}


@pytest.mark.parametrize("case", sorted(NETWORK_ID_CASES))
def test_ids_across_the_network_are_checked(tmp_path, case):
    head, expected = NETWORK_ID_CASES[case]
    text = HEAD + "stem: [{type: conv, filters: 4, kernel: 3, id: e1}]\nstages: []\n" + head
    path = tmp_path / "spec.yaml"
    assert spec_problem_lines(path, text) == [line.format(f=path) for line in expected]
