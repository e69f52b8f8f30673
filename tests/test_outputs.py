"""Issue 18: sections after the stages, `resize` to another map's size, and several named
outputs (tests/specs/two_outputs.yaml: a decoder's map and a head's label), from the spec's checks
to a built model, `info`, `plot`, `diff`, `predict`, and `train`/`evaluate` refusing them."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, IMAGES, run_cli, run_cli_in_process, spec_problem_lines

SPEC = REPO / "tests" / "specs" / "two_outputs.yaml"
PHOTO = IMAGES / "3" / "IMG_1121.JPG"

BASE = """\
name: Net
input: {shape: [16, 16, 3]}
classes: 2
stem:
  - {type: conv, filters: 4, kernel: 3, padding: same, id: low}
stages:
  - {block: basic, filters: [8, 8], stride: 2, id: bottom}
"""


def test_plan_has_the_sections_and_both_outputs():
    checked = load_checked_spec(SPEC)
    plan = checked.plan
    assert {name: node.out_shape for name, node in plan.output_nodes().items()} == {"mask": (32, 32, 3), "label": (3,)}
    assert [n.group for n in plan.nodes if n.path[:1] == ("sections",)] == ["decoder"] * 4
    resize = next(n for n in plan.nodes if n.kind == "resize")
    # 8x8x32 from the stage, resized to the stem's 32x32: the stem's map gives only its size
    assert resize.out_shape == (32, 32, 32)
    assert [plan.nodes[i].out_shape for i in resize.inputs] == [(8, 8, 32), (32, 32, 8)]


def test_keras_model_returns_the_named_outputs_the_plan_describes():
    from archbuilder.keras.graph import build_model

    checked = load_checked_spec(SPEC)
    model = build_model(checked.spec, checked.plan)
    assert isinstance(model.output, dict) and list(model.output) == ["mask", "label"]
    assert {k: tuple(t.shape[1:]) for k, t in model.output.items()} == {"mask": (32, 32, 3), "label": (3,)}
    assert model.count_params() == checked.plan.total_params == 6254
    # the resize is a stock Resizing to the stem's size, called on the stage's map alone
    resizing = next(layer for layer in model.layers if layer.__class__.__name__ == "Resizing")
    assert (resizing.height, resizing.width) == (32, 32) and tuple(resizing.input.shape) == (None, 8, 8, 32)
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    np.testing.assert_allclose(np.asarray(out["label"]).sum(axis=1), 1.0, rtol=1e-6)  # a softmax: sums to 1 in float32


def test_info_reports_each_output(tmp_path):
    text = run_cli("info", str(SPEC))
    assert text.returncode == 0, text.stderr
    assert "decoder  section" in text.stdout
    assert "Output mask: 32x32x3 (decoder)\nOutput label: 3 (head)\n" in text.stdout
    data = json.loads(run_cli("info", str(SPEC), "--json").stdout)
    assert data["outputs"] == {"mask": {"shape": [32, 32, 3], "part": "decoder"}, "label": {"shape": [3], "part": "head"}}
    assert "output_shape" not in data
    assert [row["name"] for row in data["rows"]] == ["stem", "stage 2", "stage 3", "decoder", "head"]


def test_block_diagram_draws_the_arrows_across_parts_and_marks_the_outputs():
    from archbuilder.diagrams import block_diagram

    checked = load_checked_spec(SPEC)
    diagram = block_diagram(checked.plan, checked.spec)
    arrows = [(a.tail, a.head, a.shortcut) for a in diagram.arrows]
    assert ("res3a", "decoder", None) in arrows and ("res3a", "head", None) in arrows
    assert ("stem", "decoder", "size of") in arrows and ("stem", "decoder", "skip: concat") in arrows
    lines = {box.id: box.lines for box in diagram.boxes}
    assert "⇒ output mask" in lines["decoder"] and "⇒ output label" in lines["head"]


def test_diff_of_two_multi_output_specs(tmp_path):
    other = tmp_path / "wider.yaml"
    other.write_text(SPEC.read_text().replace("filters: 32, id: bottom", "filters: 48, id: bottom"))
    result = run_cli("diff", str(SPEC), str(other), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [f["path"] for f in data["fields"]] == ["stages.1.filters"]
    assert {p["name"]: p["params_delta"] for p in data["parts"]}["decoder"] == 16 * 3  # 16 more channels into the 1x1 conv


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    result = run_cli_in_process("build", str(SPEC), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out / "two_outputs.keras"


def test_predict_gives_each_outputs_raw_values(built):
    from archbuilder import api

    result = run_cli_in_process("predict", str(built), str(PHOTO), "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert set(row["outputs"]) == {"mask", "label"}
    mask, label = np.array(row["outputs"]["mask"]), np.array(row["outputs"]["label"])
    assert mask.shape == (32, 32, 3) and label.shape == (3,)
    # the same numbers through the Python API (same file, same preprocessing)
    predictions = api.predict(str(built), [str(PHOTO)])
    np.testing.assert_allclose(predictions.outputs["label"][0], label, rtol=0, atol=0)
    text = run_cli_in_process("predict", str(built), str(PHOTO))
    assert text.returncode == 0 and "output mask 32x32x3:" in text.stdout and "output label 3:" in text.stdout


@pytest.mark.parametrize("fmt, name", [  # the converters take 20-40 s each here: two of them with -m slow
    ("saved_model", "two_saved_model"),
    pytest.param("litert", "two.tflite", marks=pytest.mark.slow),
    pytest.param("onnx", "two.onnx", marks=pytest.mark.slow)])
def test_export_runs_each_named_output_in_its_own_runtime(built, tmp_path, fmt, name):
    """Each format carries both outputs by name; run in its own runtime (LiteRT and ONNX Runtime in
    their child process), each equals Keras's output of that name."""
    from archbuilder import api

    result = api.export(str(built), fmt, tmp_path / name)
    # the project's float32 export bound (api.FLOAT32_TOLERANCE, the 1e-4); measured 0 to 1.2e-7 here
    assert result.max_difference <= api.FLOAT32_TOLERANCE and not result.warnings
    keras_rows = api.predict(str(built), [str(PHOTO)]).outputs
    exported = api.predict(str(tmp_path / name), [str(PHOTO)])
    assert exported.probabilities is None and list(exported.outputs) == list(keras_rows) == ["mask", "label"]  # the spec's order
    for key in ("mask", "label"):
        np.testing.assert_allclose(exported.outputs[key], keras_rows[key], rtol=0, atol=api.FLOAT32_TOLERANCE)
    shown = run_cli_in_process("predict", str(tmp_path / name), str(PHOTO), "--json")
    assert shown.returncode == 0 and list(json.loads(shown.stdout)["outputs"]) == ["mask", "label"], shown.stderr
    assert list(result.outputs) == ["mask", "label"]


def test_export_check_on_labelled_images_is_refused_for_named_outputs(built, tmp_path):
    result = run_cli_in_process("export", str(built), "--format", "onnx", "--out", str(tmp_path / "x.onnx"),
                                "--check", str(IMAGES))
    _refused(result, "two_outputs.keras", "--check measures a classifier's accuracy")
    assert not (tmp_path / "x.onnx").exists()


def _refused(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), lines


def test_train_and_evaluate_refuse_named_outputs_in_one_line(built, tmp_path):
    out = tmp_path / "run"
    _refused(run_cli_in_process("train", str(SPEC), "--data", str(IMAGES), "--out", str(out)),
             "two_outputs.yaml", "2 named outputs (mask: 32x32x3, label: 3)", "classifiers only")
    assert not out.exists()
    _refused(run_cli_in_process("evaluate", str(built), "--data", str(IMAGES)),
             "two_outputs.keras", "2 named outputs (mask: 32x32x3, label: 3)")


BAD = {
    "unknown_output_id": (
        BASE + "head:\n  - {type: global_average_pool, id: pooled}\noutputs: {feature: bottom, pooled: poold}\n",
        ["{f}:10:36: outputs.pooled: output 'pooled' names 'poold', which is not the id of a layer, block call, "
         "stage or section item; did you mean 'pooled'? ids: low, bottom, pooled"],
    ),
    "reserved_section_name": (
        BASE + "sections:\n  head:\n    - {type: conv, filters: 2, kernel: 1}\n",
        ["{f}:9:3: sections: section name 'head' is reserved (it names another part of the network); "
         "call it something else, e.g. 'decoder'"],
    ),
    "section_from_a_later_id": (
        BASE + "sections:\n  up:\n    - {type: resize, from: [input, late]}\n  more:\n    - {type: conv, filters: 2, kernel: 1, id: late}\n",
        ["{f}:10:28: sections.up.0.from: from: 'late' is a later layer; a layer takes only earlier layers"],
    ),
    "resize_without_size_takes_two_inputs": (
        BASE + "sections:\n  up:\n    - {type: resize}\n",
        ["{f}:10:7: sections.up.0: section up layer 0: resize without `size` takes two inputs, `from: [map, like]` "
         "(the map is resized to like's height and width), got 1"],
    ),
    "resize_to_a_size_takes_one_input": (
        BASE + "head:\n  - {type: resize, size: 4, from: [input, low]}\n",
        ["{f}:9:5: head.0: head layer 0: resize to a fixed size takes one input, got 2; to take another map's size, "
         "leave out `size` and give `from: [map, like]`"],
    ),
    "a_block_beyond_its_stage": (
        BASE.replace("stride: 2, id: bottom}", "stride: 2, repeats: 2, id: bottom}")
        + "head:\n  - {type: global_average_pool, from: bottom.2}\n",
        ["{f}:9:39: head.0.from: head layer 0: 'bottom.2' names block 2 of stage 'bottom', which has 2 blocks "
         "('bottom.0' to 'bottom.1')"],
    ),
    "a_block_of_something_that_is_no_stage": (
        BASE + "head:\n  - {type: global_average_pool, from: low.0}\n",
        ["{f}:9:39: head.0.from: from: 'low.0' is not the id of an earlier layer (ids so far: input, low, bottom)"],
    ),
    "an_output_left_unused": (
        BASE + "sections:\n  up:\n    - {type: resize, from: [input, low], id: up}\n"
               "head:\n  - {type: global_average_pool, from: bottom}\noutputs: {map: up}\n",
        ["{f}:12:5: head.0: head layer 0: the output of global_average_pool is never used: no later layer takes it "
         "(`from:`) and it is not one of the network's `outputs:`"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_new_keys_are_located(tmp_path, case):
    text, expected = BAD[case]
    path = tmp_path / "spec.yaml"
    assert spec_problem_lines(path, textwrap.dedent(text)) == [line.format(f=path) for line in expected]


def test_resize_to_another_maps_size_does_not_use_that_map(tmp_path):
    """The map whose size a resize takes is not a use of it: a layer feeding only that is refused,
    since Keras would leave it out of the model."""
    path = tmp_path / "spec.yaml"
    text = BASE + "head:\n  - {type: conv, filters: 1, kernel: 1, from: low, id: side}\n  - {type: resize, from: [bottom, side]}\n"
    lines = spec_problem_lines(path, text)
    assert len(lines) == 1 and "head.0" in lines[0] and "is never used" in lines[0], lines


def test_the_readmes_sections_example_is_the_spec_and_prints_what_it_shows():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Sections, several outputs"):]
    excerpt = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml\n") + 8)]
    assert excerpt in SPEC.read_text()
    shown = section[section.index("$ python cli.py info tests/specs/two_outputs.yaml\n"):]
    shown = shown[shown.index("\n") + 1:shown.index("```")]
    assert run_cli("info", "tests/specs/two_outputs.yaml").stdout == shown


def test_cropping_to_another_maps_size_is_the_unets_fixed_crops(tmp_path):
    """unet.yaml crops each encoder map by a number of pixels (4, 16, 40, 88); `cropping` with
    `from: [map, like]` finds the same crops from the shapes, node for node."""
    unet = REPO / "architectures" / "segmentation" / "unet.yaml"
    text = unet.read_text()
    for level, pixels in ((4, 4), (3, 16), (2, 40), (1, 88)):
        text = text.replace(f"{{type: cropping, cropping: {pixels}, from: e{level}, id: skip{level}}}",
                            f"{{type: cropping, from: [e{level}, up{level}], id: skip{level}}}")
    assert text.count("cropping: ") == 0
    rewritten = tmp_path / "unet.yaml"
    rewritten.write_text(text.replace("../blocks/unet.yaml", str(REPO / "architectures" / "blocks" / "unet.yaml")))
    fixed, matched = load_checked_spec(unet).plan, load_checked_spec(rewritten).plan
    assert [(n.kind, n.out_shape, n.params) for n in fixed.nodes] == [(n.kind, n.out_shape, n.params) for n in matched.nodes]
    crops = [n for n in matched.nodes if n.kind == "cropping"]
    assert [c.layer.sides([fixed.nodes[i].out_shape for i in c.inputs]) for c in crops] == [
        ((p, p), (p, p)) for p in (4, 16, 40, 88)]


def test_the_output_of_block_k_of_a_stage_is_stage_dot_k(tmp_path):
    """Issue 18 item 1: `STAGE.K` names block K's output (0 for the first); the stage's own id its
    last block's. An FPN takes C3-C5 this way from stages of several blocks, and a head can take an
    early block: here block 0 of a 2-block stage (16x16x8) and the stage's end (8x8x16)."""
    from archbuilder.keras.graph import build_model

    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent("""\
        name: Net
        input: {shape: [16, 16, 3]}
        classes: 3
        stem:
          - {type: conv, filters: 8, kernel: 3, padding: same}
        stages:
          - {block: basic, filters: [8, 8], repeats: 2, id: s1}
          - {block: basic, filters: [16, 16], repeats: 2, stride: 2, id: s2}
        head:
          - {type: global_average_pool, from: s1.0, id: early}
          - {type: global_average_pool, from: s2, id: late}
          - {type: concat, from: [early, late]}
          - {type: dense, units: classes, activation: softmax, id: out}
        """))
    plan = load_checked_spec(path).plan
    pools = [n for n in plan.nodes if n.kind == "global_average_pool"]
    assert [plan.nodes[n.inputs[0]].out_shape for n in pools] == [(16, 16, 8), (8, 8, 16)]
    # s1.0 is the first block's last node, not the stage's: a block of s1 lies between them
    first_block_end = plan.nodes[pools[0].inputs[0]]
    assert first_block_end.group != plan.nodes[-1].group and first_block_end.index < plan.nodes[pools[1].inputs[0]].index
    model = build_model(load_checked_spec(path).spec, plan)
    assert model.count_params() == plan.total_params
    # an output may name a block too
    named = path.with_name("named.yaml")
    named.write_text(path.read_text() + "outputs: {label: out, mid: 's2.0'}\n")
    outputs = load_checked_spec(named).plan.output_nodes()
    assert {name: node.out_shape for name, node in outputs.items()} == {"label": (3,), "mid": (8, 8, 16)}
