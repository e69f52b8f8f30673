"""A zero padding folded into the convolution after it (archbuilder/training/fused_padding.py):
outputs and gradients within the dot product's rounding bound of the exact sums, for Conv2D and
DepthwiseConv2D at strides 1 and 2, only where the padding is the convolution's SAME padding and
feeds nothing else, no Pad op left in the step, and no trace in model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from archbuilder.keras.graph import build_model  # noqa: I001  (sets TensorFlow's environment first)
from archbuilder.plan.validate import load_checked_spec
from archbuilder.training.depthwise_choice import DEPTHWISE_GRADIENT
from archbuilder.training.fused_padding import folding_convolution, use_folded_padding
from archbuilder.training.grouped_conv import switch_grouped_convolutions
from archbuilder.training.winograd_choice import WINOGRAD
from switched_layers import gamma, outputs_and_gradients, switched_and_reloaded, training_graph, twin
from train_support import REPO

import keras  # noqa: E402


def _padded(input_shape, padding, kernel, dilation=1, stride=1, groups=1, filters=6, dtype="float32"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape, dtype=dtype)
    padded = keras.layers.ZeroPadding2D(padding, name="pad", dtype=dtype)(inputs)
    convolution = keras.layers.Conv2D(filters, kernel, stride, dilation_rate=dilation, groups=groups, use_bias=False,
                                      name="conv", dtype=dtype)
    return keras.Model(inputs, convolution(padded))


def _exact(x, kernel, upstream, dilation, groups=1, stride=1):
    """Output, input and kernel gradients of TensorFlow's float64 SAME convolution (the padded
    VALID one's sums exactly, ~1e-16 off); with absolute values, the sums of the terms' magnitudes.
    Dilation as a kernel with zeros between its taps (TensorFlow's CPU kernels have no dilated
    float64 gradient): the same sums, each zero tap adding an exact zero. `groups`: channels and
    filters in that many groups, each group's filters reading only its channels."""
    kh, kw, channels, filters = kernel.shape
    spread = np.zeros(((kh - 1) * dilation + 1, (kw - 1) * dilation + 1, channels, filters))
    spread[::dilation, ::dilation] = kernel
    x64, kernel64 = tf.constant(x, tf.float64), tf.constant(spread, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([x64, kernel64])
        # Each group its own convolution (a grouped float64 convolution has no CPU kernel).
        y = tf.concat([tf.nn.conv2d(part, weights, stride, "SAME") for part, weights in
                       zip(tf.split(x64, groups, axis=-1), tf.split(kernel64, groups, axis=-1))], axis=-1)
    dx, dkernel = tape.gradient(y, [x64, kernel64], output_gradients=tf.constant(upstream, tf.float64))
    return [y.numpy(), dx.numpy(), dkernel.numpy()[::dilation, ::dilation]]


@pytest.mark.parametrize("input_shape, padding, kernel, dilation, stride", [
    ((7, 6, 5), 1, 3, 1, 1), ((6, 6, 4), 2, 5, 1, 1), ((9, 9, 3), 2, 3, 2, 1), ((5, 8, 4), ((0, 0), (1, 1)), (1, 3), 1, 1),
    # SAME for stride 2: the odd row and column after an even map (EfficientNet's and MobileNetV2's
    # correct_pad), on both sides of an odd one
    ((8, 6, 4), ((0, 1), (0, 1)), 3, 1, 2), ((7, 9, 3), 1, 3, 1, 2), ((8, 7, 3), ((1, 2), (2, 2)), 5, 1, 2)])
def test_outputs_and_gradients_within_the_dot_products_bound_of_the_exact_sums(input_shape, padding, kernel, dilation,
                                                                               stride):
    stock = _padded(input_shape, padding, kernel, dilation, stride)
    folded = twin(stock)
    assert use_folded_padding(folded) == ["conv"]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, *input_shape)).astype("float32")
    out_map = [-(-size // stride) for size in input_shape[:2]]
    upstream = rng.normal(size=(2, *out_map, 6)).astype("float32")
    have = outputs_and_gradients(folded, x, upstream)  # outputs, input gradient, kernel gradient
    weights = folded.get_layer("conv").kernel.numpy()
    exact = _exact(x, weights, upstream, dilation, stride=stride)
    magnitudes = _exact(np.abs(x), np.abs(weights), np.abs(upstream), dilation, stride=stride)
    taps = np.prod(weights.shape[:2])
    # Terms per result: an output sums taps * C products, an input gradient at most taps * F, a
    # kernel gradient one per output position, N * H' * W' (Higham (3.5): gamma_n of the magnitudes).
    terms = [taps * input_shape[-1], taps * 6, 2 * out_map[0] * out_map[1]]
    for name, value, want, magnitude, n in zip(("outputs", "input gradient", "kernel gradient"), have, exact,
                                               magnitudes, terms):
        assert value.shape == want.shape, name
        excess = np.abs(value - want) - gamma(n) * magnitude
        assert excess.max() <= 0, f"{name}: {excess.max():.3g} over the dot product's bound"
    # Not vacuous: the padding on one side only (the map shifted by a row) is far outside it.
    shifted = _exact(np.roll(x, 1, axis=1), weights, upstream, dilation, stride=stride)[0]
    assert np.abs(shifted - exact[0]).max() > 1e3 * (gamma(terms[0]) * magnitudes[0]).max()


def _padded_depthwise(input_shape, padding, kernel, stride=2, use_bias=False):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    padded = keras.layers.ZeroPadding2D(padding, name="pad")(inputs)
    convolution = keras.layers.DepthwiseConv2D(kernel, stride, use_bias=use_bias, activation="relu", name="dw")
    return keras.Model(inputs, convolution(padded))


@pytest.mark.parametrize("gradient_kernel", ["keras", "eigen"])
@pytest.mark.parametrize("input_shape, padding, kernel", [
    ((8, 6, 5), ((0, 1), (0, 1)), 3), ((8, 8, 4), ((1, 2), (1, 2)), 5), ((7, 7, 3), 2, 5)])
def test_a_depthwise_convolution_folds_with_either_kernel_gradient(input_shape, padding, kernel, gradient_kernel):
    """EfficientNet's and MobileNetV2's stride-2 depthwise layers after their correct_pad, on
    Keras's call or depthwise_gradient.py's (its kernel gradient's explicit pads then SAME's over
    the unpadded map): within the dot product's bound of the exact sums, no Pad in the step."""
    stock = _padded_depthwise(input_shape, padding, kernel, use_bias=True)
    folded = twin(stock)
    if gradient_kernel == "eigen":
        assert DEPTHWISE_GRADIENT.switch(folded, {"dw"}) == ["dw"]
    assert use_folded_padding(folded) == ["dw"] and _pads(folded, input_shape) == 0
    assert folded.get_layer("dw").call.kernel == ("eigen" if gradient_kernel == "eigen" else "same")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, *input_shape)).astype("float32")
    out_map = [-(-size // 2) for size in input_shape[:2]]
    channels = input_shape[-1]
    upstream = rng.normal(size=(2, *out_map, channels)).astype("float32")
    outputs, input_gradient, kernel_gradient, bias_gradient = outputs_and_gradients(folded, x, upstream)
    layer = folded.get_layer("dw")
    weights, bias = layer.kernel.numpy(), layer.bias.numpy()
    relu_mask = outputs > 0  # the activation's gradient passes where the output is positive
    # As a grouped convolution of one channel a group ([kh, kw, C, 1] -> [kh, kw, 1, C]), the bias
    # added after it; the gradients of the pre-activation values where the ReLU let them through.
    as_grouped = weights.reshape(kernel, kernel, 1, channels)
    pre_upstream = upstream * relu_mask
    exact = _exact(x, as_grouped, pre_upstream, 1, groups=channels, stride=2)
    magnitudes = _exact(np.abs(x), np.abs(as_grouped), np.abs(pre_upstream), 1, groups=channels, stride=2)
    exact[0] = np.maximum(exact[0] + bias, 0)
    magnitudes[0] = magnitudes[0] + np.abs(bias)
    # Per result: kh * kw products and the bias (outputs), kh * kw (input gradient: one channel),
    # N * H' * W' (kernel gradient); the ReLU is exact.
    terms = [kernel * kernel + 1, kernel * kernel, 2 * out_map[0] * out_map[1]]
    for name, value, want, magnitude, n in zip(("outputs", "input gradient", "kernel gradient"),
                                               (outputs, input_gradient, kernel_gradient.reshape(as_grouped.shape)),
                                               exact, magnitudes, terms):
        assert value.shape == want.shape, name
        assert np.all(np.abs(value - want) <= gamma(n) * magnitude), name
    np.testing.assert_allclose(bias_gradient, pre_upstream.sum(axis=(0, 1, 2)),
                               rtol=0, atol=gamma(2 * out_map[0] * out_map[1]) * np.abs(pre_upstream).sum())


def test_the_step_has_no_pad_and_convolves_same():
    stock = _padded((8, 8, 4), 1, 3)
    folded = twin(stock)
    use_folded_padding(folded)

    def ops(model):
        return [op for op in training_graph(model, (8, 8, 4)).get_operations() if op.type in ("Pad", "Conv2D", "Slice")]

    assert [op.type for op in ops(stock)].count("Pad") == 1
    convolutions = ops(folded)
    assert [op.type for op in convolutions] == ["Conv2D"]  # no Pad, and no Slice cutting its gradient back
    assert convolutions[0].get_attr("padding") == b"SAME"


def test_only_the_convolutions_same_padding_feeding_nothing_else_is_folded(tmp_path):
    assert folding_convolution(_padded((8, 8, 4), 1, 3).get_layer("pad")).name == "conv"
    assert folding_convolution(_padded((8, 8, 4), ((0, 1), (0, 1)), 3, stride=2).get_layer("pad")).name == "conv"
    assert folding_convolution(_padded((8, 8, 4), ((0, 1), (0, 1)), 2).get_layer("pad")).name == "conv"
    for model in (_padded((8, 8, 4), 1, 3, stride=2),            # PyTorch's padding, not SAME's, for stride 2 of 8
                  _padded((7, 7, 4), ((0, 1), (0, 1)), 3, stride=2),  # SAME's for 8, not for 7
                  _padded((8, 8, 4), ((1, 0), (1, 0)), 3),     # not on both sides alike
                  _padded((8, 8, 4), 1, 5),                    # less than SAME's for 5x5
                  _padded((8, 8, 4), 1, 3, dilation=2),        # less than SAME's for dilation 2
                  _padded((8, 8, 4), 1, 2),                    # an even kernel: SAME pads after only
                  _padded((8, 8, 4), 1, 3, groups=2),          # grouped, on Keras's XLA op
                  _padded((8, 8, 4), 1, 3, dtype="bfloat16"),
                  _padded_depthwise((8, 8, 4), 1, 3)):         # PyTorch's padding again, depthwise
        assert use_folded_padding(model) == [], model.layers
    adapted = _padded_depthwise((8, 8, 4), ((0, 1), (0, 1)), 3)
    assert folding_convolution(adapted.get_layer("pad")).name == "dw"
    adapted.get_layer("dw").lora_enabled = True  # as Keras marks a layer with a LoRA adapter
    assert use_folded_padding(adapted) == []  # the folded call would read the bare kernel
    inputs = keras.Input((8, 8, 4))
    padded = keras.layers.ZeroPadding2D(1)(inputs)  # also read by the add: the padded tensor is needed
    shared = keras.Model(inputs, keras.layers.Add()([keras.layers.Conv2D(4, 3)(padded),
                                                      keras.layers.Cropping2D(1)(padded)]))
    assert use_folded_padding(shared) == []
    switched = _padded((8, 8, 4), 1, 3)
    switched.get_layer("conv").convolution_op = switched.get_layer("conv").convolution_op  # a kernel of its own
    assert use_folded_padding(switched) == []
    # SE-ResNet-50: the 3x3 convolutions of its 13 stride-1 bottlenecks (not the strided three,
    # the 7x7 stem or the max pool's padding: PyTorch's, on both sides). EfficientNet-B0: its stem
    # and its four stride-2 depthwise layers (Keras's correct_pad: SAME's).
    for name, count in (("seresnet50", 13), ("efficientnet_b0", 5)):
        model = build_model(load_checked_spec(REPO / "architectures" / "imagenet" / f"{name}.yaml").spec)
        assert sum(folding_convolution(layer) is not None for layer in model.layers) == count, name

    stock = _padded((8, 8, 4), 1, 3)
    loaded = switched_and_reloaded(twin(stock), use_folded_padding, tmp_path / "folded.keras")
    assert "call" not in vars(loaded.get_layer("pad")) and "convolution_op" not in vars(loaded.get_layer("conv"))
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), stock.predict_on_batch(x))


def _pads(model, input_shape) -> int:
    return [op.type for op in training_graph(model, input_shape).get_operations()].count("Pad")


def test_a_winograd_layer_keeps_its_padding_layer():
    """Winograd's transform takes the padded map as it comes (fused_padding.py's REFOLDED)."""
    model = _padded((6, 6, 256), 1, 3, filters=256)  # a Winograd candidate: 256 channels, 6x6 out
    assert WINOGRAD.switch(model, {"conv"}) == ["conv"]
    assert use_folded_padding(model) == [] and _pads(model, (6, 6, 256)) == 1


@pytest.mark.parametrize("kernel", ["native", "split"])
def test_a_grouped_layer_keeps_its_kernel_computing_same(kernel):
    stock = _padded((7, 5, 8), 1, 3, groups=4, filters=8)
    folded = twin(stock)
    switch_grouped_convolutions(folded, {"conv": kernel})
    assert use_folded_padding(folded) == ["conv"] and folded.get_layer("conv").convolution_op.kernel == kernel
    assert _pads(folded, (7, 5, 8)) == 0
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 7, 5, 8)).astype("float32")
    upstream = rng.normal(size=(2, 7, 5, 8)).astype("float32")
    have = outputs_and_gradients(folded, x, upstream)
    weights = folded.get_layer("conv").kernel.numpy()
    exact, magnitudes = (_exact(a, w, u, 1, groups=4) for a, w, u in
                         ((x, weights, upstream), (np.abs(x), np.abs(weights), np.abs(upstream))))
    # Per result: 9 taps x 2 channels of its group (output and input gradient alike), or N*H*W.
    for name, value, want, magnitude, n in zip(("outputs", "input gradient", "kernel gradient"), have, exact,
                                               magnitudes, (18, 18, 70)):
        assert np.all(np.abs(value - want) <= gamma(n) * magnitude), name


def test_train_folds_the_padding_and_says_so(tmp_path):
    from train_support import image_folder, invoke

    data = image_folder(tmp_path / "data", per_class=6)
    spec = Path(__file__).parent / "specs" / "tiny_padded.yaml"
    result = invoke("train", spec, "--data", data, "--epochs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "zero padding folded into 1 convolution(s) (SAME)" in result.output, result.output
