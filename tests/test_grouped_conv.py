"""Grouped convolutions without XLA in training (archbuilder/training/grouped_conv.py,
grouped_choice.py): Keras's outputs and gradients to float32 rounding, every grouped convolution
of a network switched, the fastest kernel timed once and cached, and no trace in model files."""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest

from switched_layers import UNIT_ROUNDOFF, gamma
from train_support import REPO, image_folder, invoke

from archbuilder.keras.graph import build_model  # noqa: I001  (sets TensorFlow's environment first)
from archbuilder.plan.validate import load_checked_spec
from archbuilder.training import grouped_choice
from archbuilder.training.grouped_choice import (
    CACHE_NAME, TIMING_BATCH, choose_grouped_kernels, interleaved_timings, read_cache, shape_key,
    switch_grouped_where_faster, time_kernels,
)
from archbuilder.training.grouped_conv import TIMED, grouped_convolution_op, is_depthwise, switch_grouped_convolutions, switchable
from archbuilder.training.kernel_choice import cache_path, machine_key
from archbuilder.training.precision import precision_policy

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

TINY_CONVNEXT = REPO / "tests" / "specs" / "tiny_convnext.yaml"

# The zoo's grouped convolutions at small sizes (input height/width, channels, Conv2D arguments):
SHAPES = {
    # ConvNeXt's 7x7 depthwise convolution: groups = channels, bias, `same` padding
    "convnext_depthwise": ((9, 9, 32), dict(filters=32, kernel_size=7, padding="same", groups=32, use_bias=True)),
    # ResNeXt-50 32x4d's 3x3 after a 1-pixel zero padding: 32 groups of 4 channels, no bias, and
    # the stride-2 first block of a stage
    "resnext_3x3": ((10, 10, 128), dict(filters=128, kernel_size=3, groups=32, use_bias=False)),
    "resnext_3x3_stride2": ((10, 10, 128), dict(filters=128, kernel_size=3, strides=2, groups=32, use_bias=False)),
    # beyond the zoo: a depthwise multiplier of 2, and 2 groups with more outputs than inputs on an
    # odd map with `same` stride 2 (TensorFlow pads such maps unevenly)
    "depthwise_multiplier_2": ((8, 8, 16), dict(filters=32, kernel_size=3, padding="same", groups=16, use_bias=True)),
    "two_groups_same_stride2": ((9, 9, 8), dict(filters=12, kernel_size=3, strides=2, padding="same", groups=2)),
}
BATCH = 3


def _layer(input_shape, arguments, seed=0):
    """A built grouped Conv2D called on an input of `input_shape`, with random weights."""
    inputs = keras.Input(input_shape)
    conv = keras.layers.Conv2D(**arguments, name="conv")
    model = keras.Model(inputs, conv(inputs))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model, conv


def _forward_and_gradients(model, conv, x, upstream):
    """Outputs, input gradient and kernel gradient of loss = sum(outputs * upstream)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = model(x)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * upstream)  # no op in float32
    input_gradient, kernel_gradient = tape.gradient(loss, [x, conv.kernel])
    # bfloat16 values (mixed_bfloat16) as float32, which holds each exactly.
    return [tf.cast(t, tf.float32).numpy() for t in (outputs, input_gradient, kernel_gradient)]


# Why this tolerance. Each output element, input-gradient element and kernel-gradient element is a
# float32 dot product of n terms: n = kh*kw*C/G for an output (the bias is added after, the same
# op both ways), kh*kw*F/G for an input gradient, N*H'*W' for a kernel gradient. Computed in any
# order (XLA's convolution, oneDNN's depthwise kernel, our sum over a group's channels), its error
# from the exact value is at most gamma_n * sum|a_i * b_i|, gamma_n = n*u / (1 - n*u), u = 2**-24
# (Higham, "Accuracy and Stability of Numerical Algorithms", (3.5)); so two orders differ by at
# most twice that. sum|a_i * b_i| is the same convolution run on |x|, |kernel| and |upstream|,
# which Keras's own layer computes here (a sum of positive terms: its own float32 error is at most
# gamma_n relative, negligible). The outputs add the bias after, one rounding each side: u |output|
# more per side. A kernel that used a wrong weight or dropped a term would be off by ~|a_i * b_i|,
# far above this bound (test_a_wrong_kernel_layout_is_caught).
def _bound(n: int, magnitude: np.ndarray) -> np.ndarray:
    return 2 * gamma(n) * magnitude


# `depthwise` applies where groups = input channels; the others to every grouped convolution.
CASES = [(shape, kernel) for shape, (size, arguments) in SHAPES.items() for kernel in ("depthwise", *TIMED)
         if kernel != "depthwise" or arguments["groups"] == size[-1]]


@pytest.mark.parametrize("shape, kernel", CASES)
def test_each_kernel_gives_keras_outputs_and_gradients(shape, kernel):
    _check_kernel_against_keras(shape, kernel)


# Under mixed_bfloat16 both sides multiply the same bfloat16 values (input, kernel and upstream
# gradient are cast before the convolution) and sum them in float32 (oneDNN's bfloat16 kernels and
# XLA's CPU convolutions accumulate in float32): the float32 bound above, then each result rounded
# to bfloat16, at most u = 2**-8 of it per side (7 fraction bits). A biased output is rounded twice,
# after the convolution (of size at most |output| + |bias|) and after the bias.
@pytest.mark.parametrize("shape, kernel", [("convnext_depthwise", "depthwise"), ("resnext_3x3", "native"),
                                           ("resnext_3x3", "split"), ("resnext_3x3_stride2", "native")])
def test_under_mixed_bfloat16_each_kernel_gives_keras_values_to_bfloat16_rounding(shape, kernel):
    with precision_policy("mixed_bfloat16"):
        _check_kernel_against_keras(shape, kernel, rounding=2.0**-8)


def _check_kernel_against_keras(shape, kernel, rounding=0.0):
    """Outputs, input and kernel gradients of `kernel` within the bound above of Keras's own
    layer's, plus `rounding` of each result per side where they are rounded to a 16-bit type."""
    input_shape, arguments = SHAPES[shape]
    keras_model, keras_conv = _layer(input_shape, arguments)
    ours_model, ours_conv = _layer(input_shape, arguments)
    assert switchable(ours_conv)
    ours_conv.convolution_op = grouped_convolution_op(ours_conv, kernel)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(BATCH, *input_shape)).astype("float32")
    upstream = rng.normal(size=(BATCH, *keras_model.output_shape[1:])).astype("float32")
    expected = _forward_and_gradients(keras_model, keras_conv, x, upstream)
    try:
        got = _forward_and_gradients(ours_model, ours_conv, x, upstream)
    except tf.errors.OpError:
        # `native` runs only where TensorFlow's CPU Conv2D accepts grouped filters; where it does
        # not, timing reports None and it is never chosen (test_a_failing_kernel_is_never_chosen).
        assert kernel == "native"
        return
    # The magnitudes: the same convolution, without bias, on absolute values.
    with precision_policy("float32"):
        magnitude_model, magnitude_conv = _layer(input_shape, {**arguments, "use_bias": False})
    magnitude_conv.kernel.assign(np.abs(keras_conv.kernel.numpy()))
    magnitude = _forward_and_gradients(magnitude_model, magnitude_conv, np.abs(x), np.abs(upstream))
    kh, kw = keras_conv.kernel_size
    groups, filters, channels = keras_conv.groups, keras_conv.filters, input_shape[-1]
    terms = [kh * kw * channels // groups, kh * kw * filters // groups, BATCH * int(np.prod(upstream.shape[1:3]))]
    for name, want, have, n, size in zip(("outputs", "input gradient", "kernel gradient"), expected, got, terms, magnitude):
        assert have.shape == want.shape, name
        bound = _bound(n, size) + (2 * UNIT_ROUNDOFF * np.abs(want) if name == "outputs" else 0) + 2 * rounding * np.abs(want)
        if name == "outputs" and keras_conv.use_bias:
            bound = bound + 2 * rounding * (np.abs(want) + np.abs(keras_conv.bias.numpy()))
        assert np.all(np.abs(have - want) <= bound), (name, float(np.max(np.abs(have - want) - bound)))
        # the bound is far below the values themselves: the check can fail
        assert np.median(bound) < (1e-2 + 4 * rounding) * np.median(np.abs(want)), name


def test_a_wrong_kernel_layout_is_caught():
    # The same check, on a depthwise_sum kernel whose group order is reversed: must fail.
    input_shape, arguments = SHAPES["resnext_3x3"]
    keras_model, keras_conv = _layer(input_shape, arguments)
    ours_model, ours_conv = _layer(input_shape, arguments)
    op = grouped_convolution_op(ours_conv, "depthwise_sum")
    ours_conv.convolution_op = lambda inputs, kernel: op(inputs, tf.reverse(kernel, [2]))
    x = np.random.default_rng(1).normal(size=(BATCH, *input_shape)).astype("float32")
    upstream = np.ones((BATCH, *keras_model.output_shape[1:]), "float32")
    want = _forward_and_gradients(keras_model, keras_conv, x, upstream)[0]
    have = _forward_and_gradients(ours_model, ours_conv, x, upstream)[0]
    assert np.abs(have - want).max() > 0.1 * np.abs(want).max()


def _xla_calls(model) -> int:
    """Calls of XLA-compiled functions (Keras's grouped convolutions, forward and gradient) in
    `model`'s traced training step, its nested functions included."""
    x = tf.zeros((2, *model.input_shape[1:]))
    y = tf.one_hot([0, 1], model.output_shape[-1])
    graph_def = tf.function(model.train_step).get_concrete_function((x, y)).graph.as_graph_def()
    nodes = [*graph_def.node, *(node for function in graph_def.library.function for node in function.node_def)]
    return sum(1 for node in nodes if "_XlaMustCompile" in node.attr and node.attr["_XlaMustCompile"].b)


def _tiny_convnext():
    model = build_model(load_checked_spec(TINY_CONVNEXT).spec)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


@pytest.mark.slow  # ~16 s of kernel timing; by default test_cli_train_says_what_it_switched
def test_train_switches_every_grouped_convolution(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    stock, model = _tiny_convnext(), _tiny_convnext()
    grouped = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1]
    assert len(grouped) == 4  # stem_grouped (2 groups) and the three blocks' depthwise 7x7
    # Keras's own model runs each grouped convolution as an XLA function (the slow path).
    assert _xla_calls(stock) >= len(grouped)
    messages = []
    choice = switch_grouped_where_faster(model, batch_size=4, say=messages.append)
    assert sorted(choice.kernels) == sorted(grouped)
    assert {name: kind for name, kind in choice.kernels.items() if kind == "depthwise"} == {
        name: "depthwise" for name in grouped if name != "stem_grouped"}
    assert choice.kernels["stem_grouped"] in TIMED
    for layer in model.layers:
        if layer.name in grouped:
            assert vars(layer)["convolution_op"].kernel == choice.kernels[layer.name]
    assert _xla_calls(model) == 0
    assert any("3 layer(s)" in m and "depthwise" in m for m in messages), messages


def test_the_kernel_is_timed_once_per_machine_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    first = choose_grouped_kernels(_tiny_convnext(), batch_size=4)
    path = cache_path(machine_key(), CACHE_NAME)
    assert first.cache == path and first.cached and len(first.measured) == 1  # stem_grouped's one shape
    entry = read_cache(path, machine_key())[first.measured[0]]
    timed = {k: v for k, v in entry["ms"].items() if v is not None}
    # depthwise_sum is timed only where native fails (test_depthwise_sum_is_timed_where_native_fails)
    assert set(entry["ms"]) == ({"native", "split"} if "native" in timed else set(TIMED)) and "split" in timed
    assert entry["kernel"] == min(timed, key=timed.get)
    again = choose_grouped_kernels(_tiny_convnext(), batch_size=4)
    assert again.measured == [] and again.kernels == first.kernels
    # Forcing a kernel in the file (as a user may) is obeyed; a damaged file is timed again.
    data = json.loads(path.read_text())
    forced = "split" if entry["kernel"] != "split" else "depthwise_sum"
    data["shapes"][first.measured[0]]["kernel"] = forced
    path.write_text(json.dumps(data))
    assert choose_grouped_kernels(_tiny_convnext(), batch_size=4).kernels["stem_grouped"] == forced
    data["shapes"][first.measured[0]]["kernel"] = "keras"  # keep Keras's own op for that shape
    path.write_text(json.dumps(data))
    kept = choose_grouped_kernels(_tiny_convnext(), batch_size=4)
    assert "stem_grouped" not in kept.kernels and len(kept.kernels) == 3 and kept.measured == []
    data["shapes"][first.measured[0]]["kernel"] = "xla"
    path.write_text(json.dumps(data))
    assert read_cache(path, machine_key()) == {}
    assert len(choose_grouped_kernels(_tiny_convnext(), batch_size=4).measured) == 1


def test_a_failing_kernel_is_never_chosen():
    # A kernel that cannot run a shape (here `depthwise` on 4 channels per group) is reported as
    # None and left out of the choice.
    _, conv = _layer(*SHAPES["resnext_3x3"])
    ms = time_kernels(conv, batch_size=2, kernels=("split", "depthwise"), repeats=1)
    assert ms["depthwise"] is None and ms["split"] > 0


def test_model_files_do_not_change(tmp_path):
    model = build_model(load_checked_spec(TINY_CONVNEXT).spec)
    config = model.get_config()
    model.save(tmp_path / "before.keras")
    kernels = {layer.name: "depthwise" if is_depthwise(layer) else "depthwise_sum"
               for layer in model.layers if switchable(layer)}
    assert len(switch_grouped_convolutions(model, kernels)) == 4
    assert model.get_config() == config
    model.save(tmp_path / "switched.keras")
    with zipfile.ZipFile(tmp_path / "before.keras") as a, zipfile.ZipFile(tmp_path / "switched.keras") as b:
        assert a.read("config.json") == b.read("config.json")
    loaded = keras.saving.load_model(tmp_path / "switched.keras")  # plain Keras
    assert not any("convolution_op" in vars(layer) for layer in loaded.layers)
    # The file holds the same weights: plain Keras computes exactly what the unswitched model does.
    before = keras.saving.load_model(tmp_path / "before.keras")
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), before.predict_on_batch(x))
    # A switched model takes a file's weights as it is (the end of a run reloading its best epoch).
    from archbuilder.training.end_phases import load_saved_weights

    other = build_model(load_checked_spec(TINY_CONVNEXT).spec)  # its own random weights
    other.save(tmp_path / "other.keras")
    assert any(np.any(a.numpy() != b.numpy()) for a, b in zip(model.weights, other.weights))
    load_saved_weights(model, tmp_path / "other.keras")
    for have, want in zip(model.weights, other.weights, strict=True):
        np.testing.assert_array_equal(have.numpy(), want.numpy())


def test_cli_train_says_what_it_switched(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path / "cache"))
    photos = image_folder(tmp_path / "images", per_class=4)
    result = invoke("train", TINY_CONVNEXT, "--data", photos, "--out", tmp_path / "run", "--epochs", "1",
                    "--batch-size", "4", "--quiet")
    assert result.exit_code == 0, result.output
    assert "grouped convolutions with one group per channel run as depthwise convolutions" in result.output
    assert "3 layer(s)" in result.output
    assert "timing grouped convolution kernels (depthwise_sum, split, native) for 1 shape(s) on this CPU " \
        "at batch 4" in result.output
    assert "timed grouped convolution kernels in " in result.output
    assert "after training: predicting " in result.output  # the switched model predicts the end's images
    # The run's model file is a plain Keras model of the spec.
    loaded = keras.saving.load_model(tmp_path / "run" / "best.keras")
    assert not any("convolution_op" in vars(layer) for layer in loaded.layers)


@pytest.mark.slow  # a second train (~4 s on a slow CPU) for the switch's off position
def test_cli_train_leaves_grouped_convolutions_alone_without_fast_kernels(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path / "cache"))
    photos = image_folder(tmp_path / "images", per_class=4)
    result = invoke("train", TINY_CONVNEXT, "--data", photos, "--out", tmp_path / "off", "--epochs", "1",
                    "--batch-size", "4", "--quiet", "--set", "training.fast_cpu_kernels=false")
    assert result.exit_code == 0, result.output
    assert "grouped convolutions" not in result.output


def test_shape_key_names_what_decides_the_kernel():
    _, conv = _layer(*SHAPES["resnext_3x3_stride2"])
    assert shape_key(conv, 32) == "10x10x128 k3x3 s2 valid f128 g32 b32 float32"


def test_a_kernel_far_slower_after_the_first_round_is_not_timed_again():
    calls = {"fast": 0, "slow": 0}

    def step(name, seconds):
        def call():
            calls[name] += 1
            time.sleep(seconds)
            return [tf.constant(0.0)]
        return call, None, 0.0

    steps = {"fast": step("fast", 0.001), "slow": step("slow", 0.05)}
    medians = interleaved_timings(steps, repeats=5, drop_above=2.0)
    # two rounds each (one slow call on a busy machine must not drop a kernel), then only the fast
    assert calls == {"fast": 5, "slow": 2} and medians["slow"] > medians["fast"]
    calls.update(fast=0, slow=0)
    interleaved_timings(steps, repeats=5)  # without drop_above: every kernel every round
    assert calls == {"fast": 5, "slow": 5}


def test_the_kernels_are_timed_at_a_few_images_whatever_the_batch(tmp_path, monkeypatch):
    # A machine's first run pays this timing before its first step (issue 21: within 10 s), so
    # a batch of 32 is timed with 8 images, and the entry says so (runs with batches >= 8 share it).
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    timed_batches = []
    original = grouped_choice.single_convolution

    def recording(layer, batch_size, seed=0):
        timed_batches.append(batch_size)
        return original(layer, batch_size, seed)

    monkeypatch.setattr(grouped_choice, "single_convolution", recording)
    messages = []
    choice = choose_grouped_kernels(_tiny_convnext(), batch_size=32, say=messages.append)
    assert timed_batches == [TIMING_BATCH] == [8]
    assert [key.split()[-2] for key in choice.measured] == ["b8"]
    assert any("at batch 8" in m for m in messages) and any(m.startswith("timed grouped") for m in messages)
    again = choose_grouped_kernels(_tiny_convnext(), batch_size=16)
    assert again.measured == [] and again.kernels == choice.kernels
    # a batch under 8 is timed at its own size
    assert len(choose_grouped_kernels(_tiny_convnext(), batch_size=4).measured) == 1 and timed_batches[-1] == 4


def test_depthwise_sum_is_timed_where_native_fails(monkeypatch):
    _, conv = _layer(*SHAPES["resnext_3x3"])
    ms = time_kernels(conv, batch_size=2, repeats=1)
    if ms["native"] is not None:  # native runs here: depthwise_sum, its 4-20x slower rival, is not timed
        assert set(ms) == {"native", "split"} and ms["split"] > 0
    # A machine whose Conv2D refuses grouped filters (TensorFlow's own CPU kernel, oneDNN off):
    original = grouped_choice.grouped_convolution_op

    def without_native(layer, kernel):
        if kernel == "native":
            raise ValueError("no CPU kernel for grouped filters")
        return original(layer, kernel)

    monkeypatch.setattr(grouped_choice, "grouped_convolution_op", without_native)
    ms = time_kernels(conv, batch_size=2, repeats=1)
    assert ms["native"] is None and ms["depthwise_sum"] > 0 and ms["split"] > 0


def test_timing_many_shapes_tells_the_user_nothing_tensorflow_warns_about(tmp_path, monkeypatch, caplog):
    """Timing traces a new function per kernel and shape, on purpose; TensorFlow's "triggered
    tf.function retracing" warning (after 5 traces of one Python function) reached the terminal
    of every run of ResNeXt-50, which has 7 such shapes. Here 6 shapes, two or three kernels each."""
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ARCHBUILDER_TF_LOGS", raising=False)
    inputs = keras.Input((6, 6, 8))
    x = inputs
    for index, (filters, kernel) in enumerate([(8, 3), (16, 3), (8, 1), (16, 1), (8, 2), (16, 2)]):
        x = keras.layers.Conv2D(filters, kernel, padding="same", groups=2, name=f"grouped_{index}")(x)
    model = keras.Model(inputs, x)
    with caplog.at_level("WARNING", logger="tensorflow"):
        choice = choose_grouped_kernels(model, batch_size=2)
    assert len(choice.measured) == 6
    assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]
