"""Fast CPU kernel gradients (archbuilder/training/cpu_kernels.py): TensorFlow's gradients to float
rounding, only on the layers oneDNN computes slowly, and no trace of them in model files."""

from __future__ import annotations

import numpy as np

from train_support import REPO, TINY_SPEC, image_folder, invoke

from archbuilder.keras.graph import build_model  # noqa: I001  (sets TensorFlow's environment first)
from archbuilder.training.cpu_kernels import use_fast_kernel_gradients
from archbuilder.spec.validate import load_checked_spec

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


def test_train_switches_them_unless_the_spec_says_no(tmp_path):
    photos = image_folder(tmp_path / "images", per_class=6)
    # A 4x4 input: conv1 (stride 2) leaves 2x2, under the stage's 3x3 kernels.
    small = ("--set", "input.shape=[4, 4, 3]", "--epochs", "1")
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "fast", "--quiet", *small)
    assert result.exit_code == 0, result.output
    assert "fast CPU kernel gradients for 2 convolutions: " in result.output
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "stock", "--quiet", *small,
                    "--set", "training.fast_cpu_kernels=false")
    assert result.exit_code == 0, result.output
    assert "fast CPU kernel gradients" not in result.output
