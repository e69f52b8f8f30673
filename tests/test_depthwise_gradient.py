"""A DepthwiseConv2D's kernel gradient from TensorFlow's own kernel (archbuilder/training/
depthwise_gradient.py, depthwise_choice.py; the timing budget of timed_switch.py): Keras's outputs
and input gradients bit for bit, the kernel gradient within the dot product's bound of the exact
sums for every padding and stride, chosen by timing within a budget, and no trace in model files."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from archbuilder.keras.graph import build_model  # noqa: I001  (sets TensorFlow's environment first)
from archbuilder.plan.validate import load_checked_spec
from archbuilder.training.depthwise_choice import CACHE_NAME, DEPTHWISE_GRADIENT, shape_key, switch_depthwise_gradient
from archbuilder.training.depthwise_gradient import candidate
from archbuilder.training.kernel_choice import cache_path, machine_key, read_shapes
from archbuilder.training.timed_switch import CACHE_FORMAT, TimingBudget
from switched_layers import gamma, training_graph, twin
from train_support import REPO

import keras  # noqa: E402


def _layer_model(input_shape, kernel: int, stride: int, padding: str, use_bias=False, activation=None, dtype="float32"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape, dtype=dtype)
    layer = keras.layers.DepthwiseConv2D(kernel, stride, padding, use_bias=use_bias, activation=activation,
                                         name="dw", dtype=dtype)
    return keras.Model(inputs, layer(inputs)), layer


def _outputs_and_gradients(model, layer, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x) * upstream)
    return [t.numpy() for t in (model(x), *tape.gradient(loss, [x, layer.kernel]))]


# Odd and even maps, stride 1 and 2, SAME (TensorFlow pads the odd row and column after) and VALID.
CASES = [((7, 7, 8), 5, 1, "same"), ((9, 9, 4), 3, 2, "same"), ((10, 10, 3), 3, 2, "same"),
         ((10, 9, 3), 5, 2, "same"), ((8, 8, 5), 3, 2, "valid"), ((6, 6, 2), 3, 1, "valid")]


@pytest.mark.parametrize("input_shape, kernel, stride, padding", CASES)
def test_outputs_and_input_gradients_are_keras_and_the_kernel_gradient_is_within_its_bound(
        input_shape, kernel, stride, padding):
    stock, stock_layer = _layer_model(input_shape, kernel, stride, padding, use_bias=True)
    fast, fast_layer = _layer_model(input_shape, kernel, stride, padding, use_bias=True)
    fast.set_weights(stock.get_weights())
    assert candidate(fast_layer) and switch_depthwise_gradient(fast, {"dw"}) == ["dw"]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, *input_shape)).astype("float32")
    upstream = rng.normal(size=(3, *stock.output_shape[1:])).astype("float32")
    want = _outputs_and_gradients(stock, stock_layer, x, upstream)
    have = _outputs_and_gradients(fast, fast_layer, x, upstream)
    np.testing.assert_array_equal(have[0], want[0])  # the same op forward, the same bias add
    np.testing.assert_array_equal(have[1], want[1])  # the same input-gradient op
    # The kernel gradient: for each tap and channel a sum over every output position of the
    # batch, n = N * H' * W' terms, in another order than oneDNN's: each within gamma_n times the
    # sum of the terms' magnitudes of the exact float64 value (Higham (3.5)).
    kernel64 = tf.constant(stock_layer.kernel.numpy(), tf.float64)

    def exact(x, upstream, kernel):
        x = tf.constant(x, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            y = tf.nn.depthwise_conv2d(x, kernel, [1, stride, stride, 1], padding.upper())
        return tape.gradient(y, kernel, output_gradients=tf.constant(upstream, tf.float64)).numpy()

    n = upstream.shape[0] * upstream.shape[1] * upstream.shape[2]
    bound = gamma(n) * exact(np.abs(x), np.abs(upstream), tf.abs(kernel64))
    assert np.all(np.abs(have[2] - exact(x, upstream, kernel64)) <= bound)
    # Not vacuous: the kernel gradient of a one-pixel shifted padding is far outside it.
    shifted = exact(np.roll(x, 1, axis=1), upstream, kernel64)
    assert np.abs(shifted - exact(x, upstream, kernel64)).max() > 1e3 * bound.max()


def test_the_kernel_gradient_is_tensorflows_explicit_padding_op():
    """oneDNN's layout pass leaves explicit padding to TensorFlow's kernel (the module's docstring);
    the switched layer's gradient is that op, its input gradient and forward pass the usual ones."""
    model, layer = _layer_model((10, 10, 4), 3, 2, "same")
    switch_depthwise_gradient(model, {"dw"})
    ops = [op for op in training_graph(model, (10, 10, 4)).get_operations() if op.type.startswith("Depthwise")]
    filters = [op for op in ops if op.type == "DepthwiseConv2dNativeBackpropFilter"]
    assert len(filters) == 1 and filters[0].get_attr("padding") == b"EXPLICIT"
    assert filters[0].get_attr("explicit_paddings") == [0, 0, 0, 1, 0, 1, 0, 0]  # SAME: 10 -> 5, one row and column after
    assert [op.type for op in ops].count("DepthwiseConv2dNative") == 1


def test_only_stock_float32_one_kernel_per_channel_layers_are_candidates_and_files_stay_stock(tmp_path):
    assert candidate(_layer_model((8, 8, 4), 3, 1, "same", activation="relu")[1])
    assert not candidate(_layer_model((8, 8, 4), 3, 1, "same", dtype="bfloat16")[1])
    inputs = keras.Input((8, 8, 4))
    for layer in (keras.layers.DepthwiseConv2D(3, depth_multiplier=2), keras.layers.DepthwiseConv2D(3, dilation_rate=2),
                  keras.layers.Conv2D(4, 3, groups=4)):
        layer(inputs)
        assert not candidate(layer), layer
    # EfficientNet-B0's 16 depthwise layers.
    model = build_model(load_checked_spec(REPO / "architectures" / "imagenet" / "efficientnet_b0.yaml").spec)
    assert sum(candidate(layer) for layer in model.layers) == 16

    stock, _ = _layer_model((8, 8, 4), 3, 1, "same", use_bias=True, activation="relu")
    fast = twin(stock)
    config = fast.get_config()
    switch_depthwise_gradient(fast, {"dw"})
    assert fast.get_config() == config and switch_depthwise_gradient(fast, {"dw"}) == []  # switched once
    fast.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert "call" not in vars(loaded.get_layer("dw"))
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), stock.predict_on_batch(x))


def _three_shapes():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="a")(inputs)
    x = keras.layers.DepthwiseConv2D(5, padding="same", name="b")(x)
    x = keras.layers.DepthwiseConv2D(3, 2, padding="same", name="c")(x)
    return keras.Model(inputs, x)


def test_the_timing_budget_leaves_shapes_to_later_runs_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    timed = []
    for run in range(3):
        messages = []
        budget = TimingBudget(0.0)  # one shape a run
        choice = DEPTHWISE_GRADIENT.switch_where_faster(_three_shapes(), 2, messages.append, budget)
        assert budget.seconds < 0  # drawn on
        assert len(choice.measured) == 1
        timed += choice.measured
        left = 2 - run
        assert any(message.startswith("timed depthwise kernel gradients") and
                   (f"{left} shape(s) left for later runs" in message if left else "left" not in message)
                   for message in messages)
        # Untimed shapes keep oneDNN's kernel gradient and are not reported as decided.
        assert sum("did not pay" in message or "gradient for 1 convolution" in message for message in messages) == run + 1
    # One layer each: the smallest first (c's 4x4 output), then a and b in the model's order.
    a, b, c = _three_shapes().layers[1:]
    assert timed == [shape_key(layer, 2) for layer in (c, a, b)]
    entries = read_shapes(cache_path(name=CACHE_NAME), machine_key(), CACHE_FORMAT, lambda entry: True)
    assert sorted(entries) == sorted(timed)
    assert DEPTHWISE_GRADIENT.choose(_three_shapes(), 2).measured == []  # all cached now
