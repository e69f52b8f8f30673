"""Fast CPU kernel gradients (archbuilder/training/cpu_kernels.py): TensorFlow's gradients to float
rounding, only on the layers oneDNN computes slowly, and no trace of them in model files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train_support import REPO, TINY_SPEC, image_folder, invoke

from archbuilder.keras.graph import build_model  # noqa: I001  (sets TensorFlow's environment first)
from archbuilder.training.cpu_kernels import slow_kernel_gradient, use_fast_kernel_gradients
from archbuilder.training.kernel_choice import (
    SWITCH_BELOW, Timing, cache_path, choose_kernel_gradients, machine_key, read_cache, shape_key, write_cache,
)
from archbuilder.plan.validate import load_checked_spec

import keras  # noqa: E402


def _small_model():
    """Convolutions on 2x2 inputs: three whose kernel is larger than their input (switched: square,
    1x3 and strided), and a 1x1 one that is not."""
    inputs = keras.Input((2, 2, 16))
    x = keras.layers.Conv2D(8, 3, padding="same", name="square_3x3")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(8, (1, 3), padding="same", use_bias=False, name="wide_1x3")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="strided_3x3")(x)  # 2x2 -> 1x1
    x = keras.layers.Conv2D(4, 1, name="pointwise")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="fc")(x))


def _weight_steps(model, x, y):
    """One SGD step at learning rate 1: the change of each weight is minus its gradient."""
    before = model.get_weights()
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="categorical_crossentropy")
    model.train_on_batch(x, y)
    return [b - a for b, a in zip(before, model.get_weights())]


def _layer_scales(weights, gradients):
    """The largest gradient magnitude of each layer, for every weight of that layer."""
    largest: dict[str, float] = {}
    for weight, gradient in zip(weights, gradients):
        layer = weight.path.rsplit("/", 1)[0]
        largest[layer] = max(largest.get(layer, 0.0), float(np.abs(gradient).max()))
    return [largest[weight.path.rsplit("/", 1)[0]] for weight in weights]


# Why these tolerances. Each gradient element is a float32 sum of products over the batch and the
# positions (here 8 x 2 x 2 = 32 terms, and up to 3 x 3 x 16 = 144 in the input gradients feeding
# them). TensorFlow's kernel and our matmul sum in different orders, and which kernel TensorFlow
# uses depends on the CPU (AVX2 or AVX-512, oneDNN on or off). Reordering a sum of n float32 terms
# changes it by at most ~n * 2**-24 of the sum of the terms' magnitudes: 144 * 6e-8 ~ 1e-5. That
# sum of magnitudes is bounded by the scale of the layer's gradients, not by the element itself:
# the bias of a convolution that feeds batch normalization has a gradient that is exactly zero in
# exact arithmetic (batch norm removes any constant shift), so in float32 it is pure rounding noise
# (~1e-8 here) and no relative tolerance on the element can hold. Hence: atol = 1e-5 of the largest
# gradient of the same layer, rtol = 1e-4 for elements well above that noise. A 0.1% error in the
# switched kernel gradient is 100x these bounds and fails the test.
RELATIVE_TO_LAYER = 1e-5


def test_switched_layers_give_tensorflows_gradients_and_outputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 2, 16)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 8), 3)
    stock, fast = _small_model(), _small_model()
    fast.set_weights(stock.get_weights())
    assert use_fast_kernel_gradients(fast) == ["square_3x3", "wide_1x3", "strided_3x3"]
    # The forward pass runs the same convolution op.
    np.testing.assert_array_equal(stock.predict_on_batch(x), fast.predict_on_batch(x))
    expected, got = _weight_steps(stock, x, y), _weight_steps(fast, x, y)
    scales = _layer_scales(stock.weights, expected)
    for weight, want, have, scale in zip(stock.weights, expected, got, scales):
        atol = RELATIVE_TO_LAYER * scale
        if weight.path == "square_3x3/bias":  # feeds batch norm: zero in exact arithmetic
            assert np.abs(want).max() <= atol and np.abs(have).max() <= atol, weight.path
            continue
        assert np.abs(want).max() > 100 * atol, weight.path  # a gradient well above rounding noise
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=atol, err_msg=weight.path)


def test_on_the_documented_resnet50_only_the_last_stages_3x3_convolutions_switch():
    # At 64x64 the last stage sees a 2x2 input; every other convolution keeps TensorFlow's kernels.
    model = build_model(load_checked_spec(REPO / "architectures" / "resnet50.yaml").spec)
    assert use_fast_kernel_gradients(model) == ["res5a_branch2b", "res5b_branch2b", "res5c_branch2b"]


def test_model_files_do_not_change(tmp_path):
    fast = _small_model()
    config = fast.get_config()
    assert use_fast_kernel_gradients(fast)
    assert fast.get_config() == config
    fast.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert all(type(layer).convolution_op is keras.layers.Conv2D.convolution_op and
               "convolution_op" not in vars(layer) for layer in loaded.layers if isinstance(layer, keras.layers.Conv2D))


def _force(path, switch: bool) -> None:
    """Rewrite every cached decision in the machine's cache file: how a user forces one."""
    data = json.loads(path.read_text())
    for entry in data["shapes"].values():
        entry["switch"] = switch
    path.write_text(json.dumps(data))


def test_the_switch_is_timed_once_per_machine_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    model = _small_model()
    first = choose_kernel_gradients(model, batch_size=8)
    # Three candidates of three distinct shapes, each timed both ways.
    assert sorted(first.switched + first.kept) == ["square_3x3", "strided_3x3", "wide_1x3"]
    assert len(first.measured) == 3 and set(first.timings) == set(first.measured)
    assert all(t.tensorflow_ms > 0 and t.matmul_ms > 0 and t.switch == (t.matmul_ms <= SWITCH_BELOW * t.tensorflow_ms)
               for t in first.timings.values())
    assert first.cache == cache_path() and first.cache.parent == tmp_path and first.cached
    assert read_cache(first.cache, machine_key()) == first.timings
    again = choose_kernel_gradients(_small_model(), batch_size=8)
    assert again.measured == [] and again.timings == first.timings and again.switched == first.switched
    # Another batch size is another shape: timed anew, the first three kept.
    other = choose_kernel_gradients(_small_model(), batch_size=4)
    assert len(other.measured) == 3 and len(read_cache(first.cache, machine_key())) == 6


def _cache_of_small_model(switch: bool):
    """A valid cache for _small_model at batch 8, written as train would, without timing anything."""
    model = _small_model()
    path, key = cache_path(), machine_key()
    shapes = {shape_key(layer, 8) for layer in model.layers if slow_kernel_gradient(layer)}
    assert write_cache(path, key, {shape: Timing(2.0, 1.0, switch) for shape in shapes})
    return path


def test_the_switch_is_off_where_the_timing_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    path = _cache_of_small_model(switch=False)
    model = _small_model()
    choice = choose_kernel_gradients(model, batch_size=8)
    assert choice.measured == [] and choice.switched == []
    assert use_fast_kernel_gradients(model, set(choice.switched)) == []
    assert not any("convolution_op" in vars(layer) for layer in model.layers)
    _force(path, True)
    assert choose_kernel_gradients(model, batch_size=8).switched == ["square_3x3", "wide_1x3", "strided_3x3"]


@pytest.mark.parametrize("damage", ["garbage", "foreign machine", "bad entry", "old format"])
def test_a_corrupt_or_foreign_cache_is_ignored_and_rewritten(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    path = _cache_of_small_model(switch=False)  # intact, it would switch nothing and time nothing
    assert len(read_cache(path, machine_key())) == 3
    data = json.loads(path.read_text())
    if damage == "garbage":
        path.write_bytes(b"\xff{not json")
    else:
        if damage == "foreign machine":  # e.g. copied from a machine with another TensorFlow
            data["machine"]["tensorflow"] = "0.0.0"
        elif damage == "bad entry":
            next(iter(data["shapes"].values()))["switch"] = "yes"
        else:
            data["format"] = 0
        path.write_text(json.dumps(data))
    assert read_cache(path, machine_key()) == {}
    choice = choose_kernel_gradients(_small_model(), batch_size=8)
    assert len(choice.measured) == 3  # timed again, not taken from the damaged file
    assert read_cache(path, machine_key()) == choice.timings


@pytest.mark.slow  # ~11 s of kernel timing; by default test_switched_layers_give_tensorflows_gradients_and_outputs and the cache tests
def test_train_says_what_it_decided_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path / "cache"))
    photos = image_folder(tmp_path / "images", per_class=6)
    # A 4x4 input: conv1 (stride 2) leaves 2x2, under the stage's 3x3 kernels.
    small = ("--set", "input.shape=[4, 4, 3]", "--epochs", "1")
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "off", "--quiet", *small,
                    "--set", "training.fast_cpu_kernels=false")
    assert result.exit_code == 0, result.output
    assert "kernel gradients" not in result.output and not (tmp_path / "cache").exists()
    # What train waits for before its first step is said (training/first_step.py).
    assert "preparing the graph: tracing the training step" in result.output
    assert result.output.index("preparing the graph") < result.output.index("graph ready: the first step ended ")
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "timed", "--quiet", *small)
    assert result.exit_code == 0, result.output
    path = cache_path()
    assert f"timing kernel gradients of 2 convolution shape(s) on this CPU, once (cached in {path})" in result.output
    timings = read_cache(path, machine_key())
    switched = [t.switch for t in timings.values()].count(True)
    assert result.output.count("fast CPU kernel gradients for 1 convolutions: ") == switched
    assert result.output.count("TensorFlow's kernel gradients for ") == 2 - switched
    _force(path, False)
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "forced", "--quiet", *small)
    assert result.exit_code == 0, result.output
    assert "timing kernel gradients" not in result.output and "fast CPU kernel gradients" not in result.output
    assert result.output.count("TensorFlow's kernel gradients for ") == 2
    assert "the matmul path did not pay here" in result.output and "timed earlier on this CPU" in result.output
