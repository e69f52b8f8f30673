"""The exact GELU in training as one fused loop each way (archbuilder/training/fused_gelu.py):
Keras's GELU and its gradients to float32 rounding, model files unchanged."""

from __future__ import annotations

import numpy as np

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.fused_gelu import fusable, fused_gelu, use_fused_gelu  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    outputs_and_gradients, switched_and_reloaded, switches_nothing_under, twin)


def _model(activation="gelu"):
    inputs = keras.Input((5, 7))
    x = keras.layers.Dense(12, activation=activation, name="dense_gelu")(inputs)
    x = keras.layers.Dense(6, name="dense")(x)
    x = keras.layers.Activation(activation, name="activation_gelu")(x)
    return keras.Model(inputs, x)


def _pair(activation="gelu"):
    keras.utils.set_random_seed(0)
    stock = _model(activation)
    return stock, twin(stock)


def _bound(values) -> float:
    # Both sides compute x * (1 + erf(x / sqrt 2)) / 2 and its derivative in float32 with a few ops
    # each (~1 ulp, 6e-8 relatively, apiece) and erf approximations of a few ulps (Eigen's and
    # XLA's polynomials); the gradients then sum 5-12 such terms per weight. 2e-6 of each
    # quantity's own scale leaves >10x room over that; what a formula error costs is checked
    # against this bound below.
    return 2e-6 * float(np.abs(values).max())


def test_fused_gelu_computes_kerass_outputs_and_gradients():
    stock, fused = _pair()
    assert sorted(use_fused_gelu(fused)) == ["activation_gelu", "dense_gelu"]
    assert all(fusable(stock.get_layer(name)) for name in ("activation_gelu", "dense_gelu"))
    assert not fusable(stock.get_layer("dense"))
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, size=(16, 5, 7)).astype("float32")
    upstream = rng.normal(size=(16, 5, 6)).astype("float32")
    names = ["outputs", "input gradient", "dense_gelu kernel", "dense_gelu bias", "dense kernel", "dense bias"]
    want, have = outputs_and_gradients(stock, x, upstream), outputs_and_gradients(fused, x, upstream)
    for name, a, b in zip(names, want, have):
        np.testing.assert_allclose(b, a, rtol=0, atol=_bound(a), err_msg=name)


def test_the_bound_would_catch_a_wrong_gelu():
    """The tolerance above is far below what the nearest wrong GELU gives: the tanh form (the other
    GELU a switch could mix up) differs from the erf form by up to ~5e-4 on [-4, 4]."""
    x = tf.constant(np.linspace(-4, 4, 4001, dtype="float32"))
    exact = keras.activations.gelu(x).numpy()
    assert np.abs(fused_gelu(x).numpy() - exact).max() <= _bound(exact)
    assert np.abs(keras.activations.gelu(x, approximate=True).numpy() - exact).max() > 50 * _bound(exact)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fused_gelu(x)
    # d/dx GELU = Phi(x) + x phi(x): 0.5 at 0, -> 1 for large x, its minimum -0.1289 near x = -1.5.
    gradient = tape.gradient(y, x).numpy()
    assert abs(gradient[2000] - 0.5) < 1e-6 and abs(gradient[-1] - 1.0) < 1e-3
    assert abs(gradient.min() + 0.1289) < 1e-3


def test_only_exact_gelu_in_float32_is_switched_and_files_stay_stock(tmp_path):
    from keras.src.ops.nn import Gelu  # what the spec's `gelu_tanh` builds (layers/activation.py)

    for other in ("relu", Gelu(approximate=True)):
        assert use_fused_gelu(_model(other)) == []
    assert not fusable(keras.layers.Activation(Gelu(approximate=True)))
    assert switches_nothing_under("mixed_bfloat16", use_fused_gelu, _model)

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_gelu, tmp_path / "model.keras")
    assert "call" not in vars(loaded.get_layer("dense_gelu"))
    assert loaded.get_layer("activation_gelu").activation is keras.activations.gelu
    x = np.random.default_rng(2).uniform(-3, 3, size=(4, 5, 7)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=0, atol=1e-6)
