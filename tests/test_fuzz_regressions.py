"""Every crash, hang or wrong acceptance the fuzzer (tests/fuzz_strategies.py) found, as the exact
message it now gets. `{f}` stands for the spec file's path."""

from __future__ import annotations

import time

import pytest

from archbuilder.errors import SpecError
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, spec_problem_lines

HEAD = b"name: Net\ninput: {shape: [9, 7, 2]}\nclasses: 3\n"
HUGE = b"1" + b"0" * 400  # 10**400: YAML ints are unbounded, floats are not

CASES = {
    # yaml.reader.ReaderError has no mark (libyaml gives a byte offset); its text spanned two lines.
    "forbidden_control_character": (
        "name: Net\nc: \u00e9\x1fd\n".encode(),
        ["{f}:2:5: <document>: YAML syntax error: character U+001F is not allowed (control characters are not allowed)"],
    ),
    # A key holding \r, \x85 or \u2028 split one problem over several lines of output.
    "line_breaks_inside_a_key_are_escaped": (
        HEAD + b'"a\\rb\\x85\\u2028": 1\n',
        ["{f}:4:1: a\\rb\\x85\\u2028: unknown key 'a\\rb\\x85\\u2028'; valid keys: blocks, classes, defaults, "
         "drop_path_rate, head, imports, input, multipliers, name, outputs, reference, sections, stages, stem, training, "
         "variables"],
    ),
    # OverflowError: a parameter's `min` of 10**400 was shown through float() when a value fell below it.
    "parameter_min_beyond_float_range": (
        HEAD + b"blocks:\n  alpha:\n    params: {q: {type: int, min: " + HUGE + b", default: 1}}\n"
        b"    layers: [{type: conv, filters: 1, kernel: 1}]\nstages: [{block: alpha}]\n",
        ["{f}:6:446: blocks.alpha.params.q.default: must be \u2265 " + "1" + "0" * 56 + "... (received 1)"],
    ),
    # OverflowError: `same` padding divided sizes as floats; then formatting the estimate did too.
    "input_size_beyond_float_range": (
        b"name: Net\ninput: {shape: [" + HUGE + b", 8, 3]}\nstem: [{type: conv, filters: 2, padding: same, stride: 2}]\n",
        ["{f}:1:1: <document>: estimated memory 1.12e+402 B (weights 224 B, activations 1.12e+402 B) exceeds the limit "
         "of 16.0 GiB; raise it with max_memory or ARCHBUILDER_MAX_MEMORY if this machine really has the memory"],
    ),
    "units_beyond_float_range": (
        HEAD + b"head: [{type: flatten}, {type: dense, units: " + HUGE + b"}]\n",
        ["{f}:4:25: head.1: estimated memory 5.12e+402 B (weights 5.08e+402 B, activations 4.00e+400 B) exceeds the "
         "limit of 16.0 GiB; raise it with max_memory or ARCHBUILDER_MAX_MEMORY if this machine really has the memory"],
    ),
    # pydantic ValidationError from inside the plan: block names longer than 128 characters.
    "stage_label_too_large_for_layer_names": (
        HEAD + b"stages: [{block: basic, filters: [2, 2], label: 1" + b"0" * 200 + b"}]\n",
        ["{f}:4:49: stages.0.label: input should be less than or equal to 999999 "
         "(received: 100000000000000000000000000000000000000000000000000000000...)"],
    ),
    # Accepted by validate, then Keras refused the model in `build`.
    "duplicate_layer_names": (
        HEAD + b"stem: [{type: conv, filters: 2, name: c}, {type: activation, name: c}]\n",
        ["{f}:4:43: stem.1: stem layer 1: layer name 'c' is already used by stem layer 0; layer names must be unique"],
    ),
    "layer_name_equal_to_a_block_layer_name": (
        b"name: Net\ninput: {shape: [9, 7, 2], name: res2a_branch2a}\nstages: [{block: basic, filters: [2, 2]}]\n",
        ["archbuilder/library/resnet.yaml:53:9: blocks.basic.layers.0: stage 2 block a: layer name 'res2a_branch2a' "
         "is already used by the input; layer names must be unique; in block 'basic' used by stages.0 at {f}:3:10"],
    ),
    "initializer_seed_beyond_int64": (
        HEAD + b"defaults: {kernel_initializer: {type: glorot_uniform, seed: 9223372036854775808}}\n",
        ["{f}:4:61: defaults.kernel_initializer.seed: input should be less than or equal to 9223372036854775807 "
         "(received: 9223372036854775808)"],
    ),
    "batch_norm_axis_3_on_a_vector": (
        HEAD + b"defaults: {batch_norm: {axis: 3}}\nhead: [{type: flatten}, {type: batch_norm}]\n",
        ["{f}:5:25: head.1: head layer 1: batch_norm with defaults.batch_norm.axis: 3 needs an image-shaped input "
         "(height, width, channels); received shape (126,); use axis: -1"],
    ),
    # Block language (block_specs strategy). A layer whose output nothing took was planned (and
    # counted by `info`) but left out of the Keras model: static inference and Keras disagreed.
    "block_layer_whose_output_is_never_used": (
        HEAD + b"blocks:\n  b:\n    layers:\n    - {type: drop_path, rate: 0.0, id: l0}\n"
               b"    - {type: add, from: [input, input]}\nstages: [{block: b}]\n",
        ["{f}:7:7: blocks.b.layers.0: stage 2 block a: the output of drop_path is never used: no later layer takes "
         "it (`from:`) and it is not the network's output; in block 'b' used by stages.0 at {f}:9:10"],
    ),
    # KeyError: pydantic names the union member it tried (`NamePatterns`) in an error's location;
    # finding the valid keys there indexed the data with it.
    "unknown_key_inside_a_name_pattern_mapping": (
        HEAD + b"stem:\n- {type: conv, filters: 2, name: {notebok: x}}\n",
        ["{f}:5:34: stem.0.name: input should be a valid string",
         "{f}:5:35: stem.0.name.notebok: unknown key 'notebok'; did you mean 'notebook'?"],
    ),
    # OverflowError: repeats times the depth multiplier, as a float.
    "repeats_beyond_float_range": (
        HEAD + b"stages: [{block: basic, filters: [2, 2], repeats: " + HUGE + b"}]\n",
        ["{f}:4:51: stages.0.repeats: the network would have more than 20,000 layers (more than 10^30 blocks in stages.0)"],
    ),
    # `true`/`false` are constants in conditions; the static name check called them undefined.
    "boolean_constants_in_conditions": (
        HEAD + b"blocks:\n  b:\n    layers:\n    - {type: flatten, when: 'true and not false'}\n"
               b"stages: [{block: b}]\nhead: [{type: dense, units: '2 if true else 3', name: out}]\n",
        [],
    ),
    # TypeError: unhashable type: 'dict' — a mapping written as a stage's id (a mutant of the DeepLab
    # file) reached the network-wide id check after its schema error.
    "a_mapping_as_a_stage_id": (
        HEAD + b"stem: [{type: conv, filters: 2, kernel: 3}]\n"
               b"stages: [{block: basic, filters: [2, 2], repeats: 1, id: {type: zero_padding}}]\n"
               b"outputs: {out: {a: 1}}\n",
        ["{f}:5:58: stages.0.id: input should be a valid string",
         "{f}:6:16: outputs.out: input should be a valid string"],
    ),
    # Accepted, built, and trained into NaN.
    "infinite_floats": (
        HEAD + b"defaults: {batch_norm: {epsilon: .inf}}\ntraining: {learning_rate: .inf}\n",
        ["{f}:4:34: defaults.batch_norm.epsilon: input should be a finite number (received: inf)",
         "{f}:5:27: training.learning_rate: input should be a finite number (received: inf)"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fuzz_found_case_gets_a_located_message(tmp_path, case):
    text, expected = CASES[case]
    path = tmp_path / "spec.yaml"
    if not expected:  # wrongly refused: it must be accepted
        path.write_bytes(text)
        load_checked_spec(path)
        return
    assert spec_problem_lines(path, text) == [line.format(f=path) for line in expected]


def test_set_value_that_is_not_utf8():
    # Bytes that are not UTF-8 reach argv as surrogates; libyaml's parser raised UnicodeEncodeError.
    with pytest.raises(SpecError) as caught:
        load_checked_spec(REPO / "architectures" / "resnet18.yaml", ["name=\udcff"])
    assert str(caught.value) == "<--set name=\\xff>:1:1: <document>: the value is not UTF-8 text"


def test_a_million_byte_flow_list_is_refused_in_seconds(tmp_path):
    # Took 45 s and 370 MB: PyYAML composed all 500,000 values before anything counted them
    # (libyaml: ~6 s on a busy machine).
    path = tmp_path / "big.yaml"
    path.write_text("name: x\nv: [" + ",".join(["1"] * 500_000) + "]\n")
    start = time.process_time()  # CPU time: the work's cost, however loaded the machine
    with pytest.raises(SpecError) as caught:
        load_checked_spec(path)
    assert time.process_time() - start < 10
    assert str(caught.value) == f"{path}:2:39995: <document>: document has more than 20000 values; refusing to parse it"


def test_smallest_input_search_is_bounded_on_a_huge_network():
    # Took 36 s: 200 expansions of an 18,700-layer plan to suggest an input size.
    start = time.process_time()  # CPU time: the work's cost, however loaded the machine
    with pytest.raises(SpecError) as caught:
        load_checked_spec(REPO / "architectures" / "resnet50.yaml", ["stages.3.repeats=1700", "input.shape=[16,16,3]"])
    assert time.process_time() - start < 10
    assert str(caught.value).endswith(
        "head.0: head layer 0: average_pool 2x2 'avg_pool' shrinks the height from 1 to 0 (window 2, input shape "
        "(1, 1, 2048)); no input size up to 16384 that works was found within the search budget "
        "(received input.shape: [16, 16, 3])"
    )


def test_layer_names_like_keras_automatic_names_build(tmp_path):
    # Keras numbers unnamed layers itself (activation, activation_1, input_layer...); a spec using
    # one of those names made `build` fail with "The name ... is used 2 times in the model".
    from archbuilder.keras.graph import build_model

    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: Net\ninput: {shape: [8, 8, 1]}\n"
        "stem: [{type: activation, name: activation_1}, {type: activation}, {type: activation}, "
        "{type: conv, filters: 2, name: input_layer}]\n"
    )
    checked = load_checked_spec(path)
    model = build_model(checked.spec, checked.plan)
    assert [layer.name for layer in model.layers] == ["input_layer_1", "activation_1", "activation", "activation_2", "input_layer"]


def test_a_head_that_is_no_list_beside_another_problem(tmp_path):
    """Found by the fuzzer: the stem and head items of an invalid document were iterated as lists
    before being checked to be lists (`head: -1` with a bad stage raised TypeError)."""
    from train_support import spec_problem_lines

    lines = spec_problem_lines(tmp_path / "spec.yaml", "name: Net\ninput: {shape: [8, 8, 3]}\nstages: [{block: basic}]\nhead: -1\n")
    assert any("head: " in line for line in lines) and any("stages.0" in line for line in lines), lines


def test_a_float_parameter_default_beyond_float_range(tmp_path):
    """Found by the fuzzer (and on main): `default: 10**400` of a float parameter raised
    OverflowError converting it to float before its magnitude was checked."""
    from train_support import spec_problem_lines

    text = ("name: Net\ninput: {shape: [8, 8, 3]}\nblocks:\n  b:\n    params: {r: {type: float, default: 1"
            + "0" * 400 + "}}\n    layers: [{type: flatten}]\n")
    lines = spec_problem_lines(tmp_path / "spec.yaml", text)
    assert len(lines) == 1 and "blocks.b.params.r.default: 1000" in lines[0] and "exceeds 9,007,199,254,740,992" in lines[0]
