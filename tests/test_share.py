"""`share:` on a block call (tests/specs/shared_heads.yaml): the first call with a key creates the
layers, a later call runs the same Keras layers on its own input. The plan counts the weights
once and each call's MACs; the Keras model holds one layer per shared pair; calls that cannot
share are located errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, invoke, spec_problem_lines

SPEC = REPO / "tests" / "specs" / "shared_heads.yaml"
TEXT = SPEC.read_text()
CALLS = """\
    - {block: predict, filters: 16, from: fine, share: head, id: fine_out}      # creates the layers
    - {block: predict, filters: 16, from: coarse, share: head, id: coarse_out}  # runs them again
"""


def test_the_second_call_counts_its_macs_but_no_weights():
    plan = load_checked_spec(SPEC).plan
    fine = [n for n in plan.nodes if n.path == ("sections", "heads", 0)]
    coarse = [n for n in plan.nodes if n.path == ("sections", "heads", 1)]
    assert [n.shares for n in fine] == [None] * 3 and [n.shares for n in coarse] == [n.index for n in fine]
    assert [n.params for n in coarse] == [0, 0, 0] and [n.params for n in fine] == [9 * 8 * 16 + 16, 0, 16 * 3 + 3]
    # its own map: 8x8 where the first call's is 16x16, so a quarter of the MACs
    assert [n.stats.macs * 4 for n in coarse] == [n.stats.macs for n in fine]
    assert [n.out_shape for n in coarse] == [(8, 8, 16), (8, 8, 16), (8, 8, 3)]
    assert coarse[0].name == fine[0].name == "predict_conv"  # the same Keras layer, so its name
    assert plan.total_params == (27 * 8 + 8) + (72 * 8 + 8) + (72 * 16 + 16) + (16 * 3 + 3)


def test_keras_runs_the_first_calls_layers_on_the_second_input():
    import keras

    from archbuilder.keras.graph import build_model

    checked = load_checked_spec(SPEC)
    model = build_model(checked.spec, checked.plan)
    assert len(model.layers) == 6 and model.count_params() == checked.plan.total_params
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    out = model(x)
    coarse = keras.Model(model.input, model.get_layer("conv2d_1").output)(x)
    by_hand = model.get_layer("conv2d_2")(model.get_layer("activation")(model.get_layer("predict_conv")(coarse)))
    np.testing.assert_array_equal(np.asarray(out["coarse"]), np.asarray(by_hand))


def test_info_and_the_block_diagram_say_what_is_shared():
    from archbuilder.diagrams import block_diagram

    checked = load_checked_spec(SPEC)
    [box] = [b for b in block_diagram(checked.plan, checked.spec).boxes if b.id == "heads"]
    assert "shares weights with section heads item 0" in box.lines
    result = invoke("info", SPEC, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # the heads' weights once (9*8*16+16 + 16*3+3), whichever call runs them
    assert (data["total_params"], [row["params"] for row in data["rows"] if row["name"] == "heads"]) == (2027, [1219])


@pytest.mark.parametrize("second, message", [
    ("{block: predict, filters: 16, from: wide, share: head}",
     "heads.1.share: section heads layer 1: share: 'head' reuses the layers of section heads layer 0 (block 'predict'), "
     "whose input was 16x16x8 (8 channels); this call's input is 8x8x16, so the weights cannot fit it"),
    ("{block: other, filters: 16, from: coarse, share: head}",
     "heads.1.block: section heads layer 1: share: 'head' reuses the layers of section heads layer 0 (block 'predict'); "
     "a call sharing them must call that block, not 'other'"),
    ("{block: predict, filters: 32, from: coarse, share: head}",
     "heads.1.share: section heads layer 1: share: 'head' reuses the layers of section heads layer 0, but this call's "
     "arguments build other layers: its conv 3x3 'predict_conv' has filters 32 where the first call's has filters 16; "
     "pass the same arguments"),
])
def test_calls_that_cannot_share_are_located(tmp_path, second, message):
    text = TEXT.replace("outputs: {fine: fine_out, coarse: coarse_out}", "outputs: {fine: fine_out, coarse: c}")
    text = text.replace(CALLS, CALLS.splitlines(keepends=True)[0] + f"    - {second[:-1]}, id: c}}\n")
    text = text.replace("sections:\n", "  - {type: conv, filters: 16, kernel: 1, from: coarse, id: wide}\n"
                                       "  - {type: add, from: [coarse, coarse]}\nsections:\n")
    text = text.replace("blocks:\n", "blocks:\n  other:\n    params: {filters: {type: int}}\n"
                                     "    layers: [{type: conv, filters: filters, kernel: 1}]\n")
    lines = spec_problem_lines(tmp_path / "bad.yaml", text)
    assert len(lines) == 1 and lines[0].endswith(message), lines
    line = text.splitlines().index(f"    - {second[:-1]}, id: c}}") + 1
    assert lines[0].startswith(f"{tmp_path / 'bad.yaml'}:{line}:")
    result = invoke("validate", tmp_path / "bad.yaml")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_share_is_no_block_parameter_name(tmp_path):
    text = TEXT.replace("params: {filters: {type: int, min: 1}}", "params: {filters: {type: int, min: 1}, share: {type: int}}")
    lines = spec_problem_lines(tmp_path / "bad.yaml", text)
    assert any("parameter name 'share' is reserved" in line for line in lines), lines


@pytest.mark.parametrize("fmt, name", [  # the converters take 20-40 s each here: two of them with -m slow
    ("saved_model", "shared_saved_model"),
    pytest.param("litert", "shared.tflite", marks=pytest.mark.slow),
    pytest.param("onnx", "shared.onnx", marks=pytest.mark.slow)])
def test_a_saved_model_keeps_one_layer_per_shared_pair_and_exports(tmp_path, fmt, name):
    """The `.keras` file holds each shared layer once and reloads (safe mode) with the sharing; each
    export format runs both outputs in its own runtime as Keras does."""
    from archbuilder import api
    from train_support import IMAGES, run_cli_in_process

    result = run_cli_in_process("build", str(SPEC), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    built = tmp_path / "shared_heads.keras"
    model = api.load_model(str(built))
    assert len(model.layers) == 6 and model.count_params() == 2027
    exported = api.export(str(built), fmt, tmp_path / name)
    # the project's float32 export bound (api.FLOAT32_TOLERANCE); measured 0 to 2.5e-7 here
    assert exported.max_difference <= api.FLOAT32_TOLERANCE and not exported.warnings
    photo = str(IMAGES / "3" / "IMG_1121.JPG")
    keras_rows, rows = api.predict(str(built), [photo]).outputs, api.predict(str(tmp_path / name), [photo]).outputs
    for key in ("fine", "coarse"):
        np.testing.assert_allclose(rows[key], keras_rows[key], rtol=0, atol=api.FLOAT32_TOLERANCE)


SIZED = """\
name: sized
input: {shape: [8, 8, 4]}
blocks:
  halve:                      # its resize is made for the size of its own pooled map
    layers:
      - {type: max_pool, pool: 2, id: half}
      - {type: resize, from: [input, half]}
  position:                   # its weights are one per token and channel
    layers: [{type: position_embedding}]
stem:
"""


@pytest.mark.parametrize("stem, message", [
    (["{block: halve, share: h, id: a}", "{block: halve, share: h, id: b}"],
     "stem.1.share: stem layer 1: share: 'h' reuses the layers of stem layer 0, but this call's arguments build other "
     "layers: its resize is sized by other inputs than the first call's; pass the same arguments"),
    (["{type: max_pool, pool: 2}", "{type: reshape, shape: [-1, 4], id: t16}", "{block: position, share: p, id: a}",
      "{type: reshape, shape: [-1, 4], from: input, id: t64}", "{block: position, share: p, id: b}"],
     "stem.4.share: stem layer 4: share: 'p' reuses the layers of stem layer 2, but this call's arguments build other "
     "layers: its position_embedding would hold 256 weights where the first call's holds 64; pass the same arguments"),
])
def test_layers_made_for_their_input_sizes_cannot_share_across_sizes(tmp_path, stem, message):
    """Same layers, same channels, but a Keras layer built for the first call's sizes would not fit
    the second's (Keras fails there with a traceback; the plan says so first)."""
    text = SIZED + "".join(f"  - {item}\n" for item in stem) + "outputs: {a: a, b: b}\n"
    lines = spec_problem_lines(tmp_path / "bad.yaml", text)
    assert len(lines) == 1 and lines[0].endswith(message), lines
