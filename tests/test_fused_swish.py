"""Swish (SiLU) in training with its gradient written out (archbuilder/training/fused_swish.py):
Keras's outputs and gradients to float32 rounding, a smaller traced graph, model files unchanged."""

from __future__ import annotations

import numpy as np

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.fused_swish import fusable, fused_swish, use_fused_swish  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    assert_same_outputs_and_gradients, switched_and_reloaded, switches_nothing_under, training_graph_ops, twin)

SWITCHED = ["activation_silu", "conv_swish", "dense_swish", "flat_swish"]
U = 2.0 ** -24  # float32's unit roundoff


def _model(activation="swish"):
    inputs = keras.Input((5, 7))
    x = keras.layers.Dense(12, activation=activation, name="dense_swish")(inputs)  # rank 3: fused_dense's matmul
    x = keras.layers.Dense(6, name="dense")(x)
    x = keras.layers.Activation("silu" if activation == "swish" else activation, name="activation_silu")(x)
    x = keras.layers.Reshape((5, 6, 1))(x)
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.Activation(activation, name="conv_swish")(x)  # EfficientNet's: after a convolution
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation=activation, name="flat_swish")(x))  # rank 2


def _pair(activation="swish"):
    keras.utils.set_random_seed(0)
    stock = _model(activation)
    return stock, twin(stock)


def _bound(values) -> float:
    # Both sides compute x * s, each with its own float32 sigmoid (Eigen's, XLA's: a few ulps
    # apiece) and one rounding, and the derivative s + x s (1 - s) with four or five ops (one
    # rounding, 6e-8 relatively, apiece, of terms no larger than the result times 1 + |x|); the
    # weights' gradients then sum such terms through the layers. 2e-6 (~34 ulps) of each
    # quantity's own scale covers that with room; what a formula error costs is checked against
    # the elementwise bound below.
    return 2e-6 * float(np.abs(values).max())


def test_fused_swish_computes_kerass_outputs_and_gradients():
    stock, fused = _pair()
    assert sorted(use_fused_swish(fused)) == SWITCHED
    assert all(fusable(stock.get_layer(name)) for name in SWITCHED)
    assert not fusable(stock.get_layer("dense")) and not fusable(stock.get_layer("conv"))
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, size=(16, 5, 7)).astype("float32")
    upstream = rng.normal(size=(16, 4)).astype("float32")
    assert_same_outputs_and_gradients(stock, fused, x, upstream, bound=_bound)


def _gradient(function, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    return y.numpy(), tape.gradient(y, x).numpy()


def test_the_gradient_is_swishs_derivative_and_a_wrong_one_fails():
    """Elementwise against float64: the values and the derivative each within a bound derived
    from their terms, which Keras's own values meet too and the nearest wrong formulas exceed many
    times over."""
    x = np.linspace(-12, 12, 24001, dtype="float32")
    y, gradient = _gradient(fused_swish, tf.constant(x))

    s = 1.0 / (1.0 + np.exp(-x.astype("float64")))
    # x * s: the sigmoid's float32 approximation (XLA's here, Eigen's in Keras: a few ulps each)
    # and the product's rounding; 16 ulps of |y|.
    for values in (y, keras.activations.silu(tf.constant(x)).numpy()):
        assert np.all(np.abs(values - x * s) <= 16 * U * np.abs(x * s))
    exact = s + x * s * (1.0 - s)
    # Terms no larger than s (1 + |x|): a few ulps of the sigmoid carried through 1 - s and x s,
    # and four roundings; 16 of them.
    bound = 16 * U * s * (1.0 + np.abs(x))
    assert np.all(np.abs(gradient - exact) <= bound)
    # d/dx swish: 0.5 at 0, -> 1 for large x, its minimum -0.0998 near x = -2.3994.
    assert gradient[12000] == 0.5 and abs(gradient[-1] - 1.0) < 1e-4
    assert abs(gradient.min() + 0.09984) < 1e-4
    for wrong in (s * (1.0 + x * s), s + x * (1.0 - s), s * (1.0 - s) * (1.0 + x)):
        assert np.abs(wrong - exact).max() > 1000 * bound.max(), wrong


def test_the_traced_training_step_is_smaller():
    stock, fused = _pair()
    use_fused_swish(fused)
    stock_ops, fused_ops = (training_graph_ops(model, (5, 7)) for model in (stock, fused))
    # TensorFlow's silu is 26 ops an activation (beta's multiply, its sigmoid recomputed, beta's
    # gradient, custom_gradient's copies), the switched one 2 (one call of each compiled loop;
    # 3 with the forward as TensorFlow's Sigmoid and Mul, 7 with the gradient's ops apart too):
    # 24 fewer for each of the four, and 16 fewer from fused_dense's 2-D product for the rank-3
    # Dense (222 -> 110 ops with TensorFlow 2.21).
    assert stock_ops - fused_ops >= 4 * 24 + 16, (stock_ops, fused_ops)


def test_only_stock_float32_swish_layers_are_switched_and_files_stay_stock(tmp_path):
    for other in ("relu", "sigmoid", "hard_silu", "gelu"):
        assert use_fused_swish(_model(other)) == [], other
    assert not fusable(keras.layers.Activation("hard_swish"))
    assert fusable(keras.layers.Activation("swish")) and fusable(keras.layers.Activation("silu"))
    assert switches_nothing_under("mixed_bfloat16", use_fused_swish, _model)

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_swish, tmp_path / "model.keras")
    assert all("call" not in vars(loaded.get_layer(name)) for name in SWITCHED)
    assert loaded.get_layer("conv_swish").activation is keras.activations.silu
    x = np.random.default_rng(2).uniform(-3, 3, size=(4, 5, 7)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=0, atol=1e-6)
