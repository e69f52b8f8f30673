"""1x1 convolutions as matrix products (archbuilder/training/pointwise_conv.py, pointwise_choice.py):
outputs and both gradients within the dot product's rounding bound of the exact sums, only on
the candidate layers, chosen by timing once per machine and shape, and no trace in model files."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

from archbuilder.keras.graph import build_model  # noqa: I001  (sets TensorFlow's environment first)
from archbuilder.plan.validate import load_checked_spec
from archbuilder.training.fused_conv_bias import use_fused_conv_bias
from archbuilder.training.kernel_choice import cache_path, machine_key, read_shapes
from archbuilder.training.pointwise_choice import (
    CACHE_NAME, POINTWISE, SEPARABLE, choose_pointwise, switch_pointwise, switch_pointwise_where_faster,
)
from archbuilder.training.pointwise_conv import candidate, pointwise_convolution, separable_candidate
from archbuilder.training.timed_switch import CACHE_FORMAT
from switched_layers import cache_decisions, gamma, training_graph, twin
from train_support import REPO

import keras  # noqa: E402


def _exact(x, kernel, upstream):
    """Output and both gradients of TensorFlow's float64 convolution: exact to ~1e-16, far below
    the float32 bounds checked against it; with absolute values, the sums of the terms' magnitudes."""
    x64, kernel64 = tf.constant(x, tf.float64), tf.constant(kernel, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([x64, kernel64])
        y = tf.nn.conv2d(x64, kernel64, 1, "SAME")
    gradients = tape.gradient(y, [x64, kernel64], output_gradients=tf.constant(upstream, tf.float64))
    return [y.numpy(), *(t.numpy() for t in gradients)]


def _ours(x, kernel, upstream):
    xt, kt = tf.constant(x), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = pointwise_convolution(xt, kt)
    return [y.numpy(), *(t.numpy() for t in tape.gradient(y, [xt, kt], output_gradients=upstream))]


@pytest.mark.parametrize("shape, filters", [((2, 5, 7, 24), 40), ((3, 4, 4, 144), 24), ((1, 2, 3, 5), 1)])
def test_outputs_and_gradients_within_the_dot_products_bound_of_the_exact_sums(shape, filters):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(1, 1, shape[-1], filters)).astype("float32")
    upstream = rng.normal(size=(*shape[:-1], filters)).astype("float32")
    got = _ours(x, kernel, upstream)
    exact = _exact(x, kernel, upstream)
    magnitudes = _exact(np.abs(x), np.abs(kernel), np.abs(upstream))
    # Terms per result: an output sums C products, an input gradient F, a kernel gradient one per
    # position, N * H * W.
    terms = [shape[-1], filters, shape[0] * shape[1] * shape[2]]
    for name, have, want, magnitude, n in zip(("outputs", "input gradient", "kernel gradient"), got, exact,
                                              magnitudes, terms):
        assert have.shape == want.shape, name
        excess = np.abs(have - want) - gamma(n) * magnitude
        assert excess.max() <= 0, f"{name}: {excess.max():.3g} over the dot product's bound"


def test_a_wrong_product_is_caught():
    """Not vacuous: the bound is a few ulps, and the kernel's transpose (the layout slip a reshape
    invites) is off by far more."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 3, 8)).astype("float32")
    kernel = rng.normal(size=(1, 1, 8, 8)).astype("float32")
    wrong = pointwise_convolution(tf.constant(x), tf.constant(np.transpose(kernel, (0, 1, 3, 2)))).numpy()
    exact = _exact(x, kernel, np.ones((2, 3, 3, 8), "float32"))[0]
    magnitude = _exact(np.abs(x), np.abs(kernel), np.ones((2, 3, 3, 8), "float32"))[0]
    assert (np.abs(wrong - exact) - gamma(8) * magnitude).max() > 1e3 * gamma(8) * magnitude.max()


def _candidates_model(dtype="float32"):
    inputs = keras.Input((6, 6, 16))
    x = keras.layers.Conv2D(24, 1, use_bias=False, name="pointwise", dtype=dtype)(inputs)
    x = keras.layers.Conv2D(24, 1, name="biased", dtype=dtype)(x)
    x = keras.layers.Conv2D(24, 1, strides=2, name="strided", dtype=dtype)(x)
    x = keras.layers.Conv2D(24, 3, padding="same", name="conv3x3", dtype=dtype)(x)
    x = keras.layers.Conv2D(24, 1, groups=2, name="grouped", dtype=dtype)(x)
    x = keras.layers.Conv2D(16, 1, name="thin_out", dtype=dtype)(x)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, dtype=dtype)(x)
    gate = keras.layers.Conv2D(16, 1, activation="sigmoid", name="excite_1x1", dtype=dtype)(pooled)
    x = keras.layers.Multiply(dtype=dtype)([x, gate])
    x = keras.layers.GlobalAveragePooling2D(dtype=dtype)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc", dtype=dtype)(x))


CANDIDATES = ["pointwise", "biased", "thin_out"]


def test_only_stock_float32_1x1_stride_1_convolutions_on_maps_larger_than_1x1_are_candidates():
    assert [layer.name for layer in _candidates_model().layers if candidate(layer)] == CANDIDATES
    assert not any(candidate(layer) for layer in _candidates_model("bfloat16").layers)
    # EfficientNet-B0's are its 32 expansion and projection layers, not its 32 squeeze-and-excitation
    # 1x1s (on pooled 1x1 maps).
    model = build_model(load_checked_spec(REPO / "architectures" / "imagenet" / "efficientnet_b0.yaml").spec)
    names = [layer.name for layer in model.layers if candidate(layer)]
    assert len(names) == 32 and all(name.endswith(("expand_conv", "project_conv", "top_conv")) for name in names)


def test_a_switched_model_trains_with_matrix_products_and_keeps_its_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 6, 16)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 4), 3)
    stock = _candidates_model()
    fast = twin(stock)
    config = fast.get_config()
    use_fused_conv_bias(fast)  # as train does first: its call keeps calling the layer's convolution_op
    assert switch_pointwise(fast, {*CANDIDATES, "strided", "excite_1x1"}) == CANDIDATES
    assert fast.get_config() == config
    # Each switched layer: one MatMul forward and two backward (the first, on the model's input,
    # needs no input gradient), and one Conv2D fewer.
    stock_ops, fast_ops = (collections.Counter(op.type for op in training_graph(model, (6, 6, 16)).get_operations())
                           for model in (stock, fast))
    assert fast_ops["MatMul"] - stock_ops["MatMul"] == 3 * len(CANDIDATES) - 1
    assert stock_ops["Conv2D"] - fast_ops["Conv2D"] == len(CANDIDATES)
    for model in (stock, fast):
        model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    # Three products deep the outputs agree to float32 rounding, not bit for bit.
    want, have = stock.predict_on_batch(x), fast.predict_on_batch(x)
    np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert fast.train_on_batch(x, y) > 0
    fast.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert not any("convolution_op" in vars(layer) or "call" in vars(layer) for layer in loaded.layers)
    # Stock layers with the trained weights: Keras's own convolutions, as a clone of the trained
    # model computes them.
    np.testing.assert_array_equal(loaded.predict_on_batch(x), twin(fast).predict_on_batch(x))



def test_the_choice_is_timed_once_per_machine_and_shape_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    first = choose_pointwise(_candidates_model(), batch_size=2)
    # Three candidates, three shapes (6x6x16 -> 24, 6x6x24 -> 24, 3x3x24 -> 16), each timed both ways.
    assert sorted(first.switched + first.kept) == sorted(CANDIDATES)
    assert len(first.measured) == 3 and first.cache == cache_path(name=CACHE_NAME) and first.cached
    for entry in first.timings.values():
        ms = entry["ms"]
        assert ms["keras"] > 0 and ms["matmul"] > 0 and entry["switch"] == (ms["matmul"] <= 0.9 * ms["keras"])
    assert read_shapes(first.cache, machine_key(), CACHE_FORMAT, lambda entry: True) == first.timings
    again = choose_pointwise(_candidates_model(), batch_size=2)
    assert again.measured == [] and again.switched == first.switched


@pytest.mark.parametrize("switch", [True, False])
def test_train_switches_what_the_cache_says_and_says_why(tmp_path, monkeypatch, switch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    model = _candidates_model()
    cache_decisions(POINTWISE, switch, model, batch_size=4)
    messages = []
    choice = switch_pointwise_where_faster(model, 4, messages.append)
    switched = [layer.name for layer in model.layers if "convolution_op" in vars(layer)]
    assert switched == (CANDIDATES if switch else []) == choice.switched
    assert not any("timing" in message for message in messages)
    said = "matrix products for 1 convolution(s) of" if switch else "matrix products did not pay here"
    assert sum(said in message and "timed earlier on this CPU" in message for message in messages) == 3
    assert any("6x6x16 k1x1 s1 f24" in message and "(1.0 ms against TensorFlow's 2.0 ms per step" in message
               for message in messages)


def _separable(input_shape, kernel: int, stride: int, padding: str, filters: int, multiplier=1, use_bias=False,
               activation=None, dtype="float32"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape, dtype=dtype)
    layer = keras.layers.SeparableConv2D(filters, kernel, stride, padding, depth_multiplier=multiplier,
                                         use_bias=use_bias, activation=activation, name="sep", dtype=dtype)
    return keras.Model(inputs, layer(inputs)), layer


@pytest.mark.parametrize("input_shape, kernel, stride, padding, filters, multiplier", [
    ((7, 7, 24), 3, 1, "same", 40, 1), ((9, 8, 8), 3, 2, "valid", 16, 2), ((6, 6, 5), 5, 1, "same", 3, 1)])
def test_a_separable_convolution_keeps_its_depthwise_half_and_bounds_its_1x1_half(
        input_shape, kernel, stride, padding, filters, multiplier):
    stock, stock_layer = _separable(input_shape, kernel, stride, padding, filters, multiplier, use_bias=True)
    fast, fast_layer = _separable(input_shape, kernel, stride, padding, filters, multiplier, use_bias=True)
    fast.set_weights(stock.get_weights())
    assert separable_candidate(fast_layer) and SEPARABLE.switch(fast, {"sep"}) == ["sep"]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, *input_shape)).astype("float32")
    upstream = rng.normal(size=(2, *stock.output_shape[1:])).astype("float32")

    def run(model, layer, x, upstream, dtype=tf.float32):
        x = tf.constant(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
        gradients = tape.gradient(y, [x, layer.depthwise_kernel, layer.pointwise_kernel],
                                  output_gradients=tf.constant(upstream, dtype))
        return [y.numpy(), *(t.numpy() for t in gradients)]

    have, want = run(fast, fast_layer, x, upstream), run(stock, stock_layer, x, upstream)
    # Against Keras's float32 layer: both are float32 sums of the same terms in other orders, so
    # each is within gamma_n of the exact value and they of each other within twice that. The
    # magnitudes: the same layer on |x|, |kernels| and |upstream| (a float32 sum of positive terms,
    # itself within gamma_n relative: negligible here). Terms per result: an output sums
    # k*k*C*m products through the depthwise half and C*m of them through the 1x1 half, so it
    # carries at most k*k + C*m roundings (plus the bias's one); the input and depthwise-kernel
    # gradients pass back through both halves (F + k*k terms; positions N*H'*W' for a kernel);
    # the 1x1 kernel's gradient sums N*H'*W' positions of depthwise outputs (k*k each).
    absolute = _separable(input_shape, kernel, stride, padding, filters, multiplier, use_bias=True)[0]
    absolute.set_weights([np.abs(w) for w in stock.get_weights()])
    magnitudes = run(absolute, absolute.get_layer("sep"), np.abs(x), np.abs(upstream))
    channels, positions = input_shape[-1] * multiplier, upstream.shape[0] * upstream.shape[1] * upstream.shape[2]
    terms = [kernel * kernel + channels + 1, filters + kernel * kernel, positions + filters, positions + kernel * kernel]
    for name, a, b, magnitude, n in zip(("outputs", "input gradient", "depthwise kernel gradient",
                                         "pointwise kernel gradient"), have, want, magnitudes, terms):
        assert np.all(np.abs(a - b) <= 2 * gamma(n) * magnitude), name
    # Not vacuous: a pointwise kernel of transposed layout (where it is square) or missing its
    # last input channel is far outside the bound.
    wrong = tf.constant(fast_layer.pointwise_kernel.numpy()[:, :, :-1], tf.float32)
    depthwise = tf.nn.depthwise_conv2d(tf.constant(x), fast_layer.depthwise_kernel, [1, stride, stride, 1], padding.upper())
    off = pointwise_convolution(depthwise[..., :-1], wrong).numpy() + fast_layer.bias.numpy() - want[0]
    assert np.abs(off).max() > 1e3 * 2 * gamma(terms[0]) * magnitudes[0].max()


def test_only_stock_float32_separable_layers_switch_and_xceptions_all_do(tmp_path):
    assert separable_candidate(_separable((8, 8, 4), 3, 1, "same", 8)[1])
    assert not separable_candidate(_separable((8, 8, 4), 3, 1, "same", 8, dtype="bfloat16")[1])
    inputs = keras.Input((8, 8, 4))
    dilated = keras.layers.SeparableConv2D(8, 3, dilation_rate=2)
    dilated(inputs)
    tiny = keras.layers.SeparableConv2D(8, 8)  # a 1x1 output map
    tiny(inputs)
    assert not separable_candidate(dilated) and not separable_candidate(tiny)
    model = build_model(load_checked_spec(REPO / "architectures" / "imagenet" / "xception.yaml").spec)
    assert sum(separable_candidate(layer) for layer in model.layers) == 34

    stock, _ = _separable((8, 8, 4), 3, 1, "same", 8, use_bias=True, activation="relu")
    fast = twin(stock)
    config = fast.get_config()
    assert SEPARABLE.switch(fast, {"sep"}) == ["sep"] and fast.get_config() == config
    fast.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert "call" not in vars(loaded.get_layer("sep"))
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), stock.predict_on_batch(x))
