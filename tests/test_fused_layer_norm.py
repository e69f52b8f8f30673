"""Layer norm in training as one fused loop each way (archbuilder/training/fused_layer_norm.py):
Keras's layer norm and its gradients to float32 rounding, model files unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402

from archbuilder.training.fused_layer_norm import fusable, use_fused_layer_norm  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    outputs_and_gradients, switched_and_reloaded, switches_nothing_under, twin)

CHANNELS = 24


def _model(rank=4, **norm):
    inputs = keras.Input((5, 5, 3) if rank == 4 else (7, 3))
    x = keras.layers.Dense(CHANNELS, name="dense")(inputs)
    x = keras.layers.LayerNormalization(name="norm", **norm)(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def _pair(rank=4, **norm):
    """The same model twice, the second switched; gamma and beta far from their initial 1 and 0,
    so that a formula mixing them up shows."""
    keras.utils.set_random_seed(0)
    stock = _model(rank, **norm)
    rng = np.random.default_rng(1)
    for weight in stock.get_layer("norm").weights:
        weight.assign(rng.uniform(0.5, 2.0, CHANNELS).astype("float32"))
    return stock, twin(stock)


@pytest.mark.parametrize("rank, norm", [(4, {"epsilon": 1e-6}), (3, {"epsilon": 1e-3}),
                                        (4, {"center": False}), (3, {"scale": False})])
def test_fused_layer_norm_computes_kerass_outputs_and_gradients(rank, norm):
    stock, fused = _pair(rank, **norm)
    assert use_fused_layer_norm(fused) == ["norm"]
    rng = np.random.default_rng(2)
    # Mean 3, spread 2: normalization has real work to do.
    x = (3.0 + 2.0 * rng.normal(size=(8, *stock.input_shape[1:]))).astype("float32")
    upstream = rng.normal(size=(8, *stock.output_shape[1:])).astype("float32")
    want, have = outputs_and_gradients(stock, x, upstream), outputs_and_gradients(fused, x, upstream)
    assert len(want) == len(have) == 2 + len(stock.trainable_weights)
    for index, (a, b) in enumerate(zip(want, have)):
        # Both compute in float32 over 24 channels per row and sum the weight gradients over
        # 8*5*5 = 200 rows in different orders: ~sqrt(n) ulps apart (~1e-6 relatively) times each
        # quantity's own scale. 2e-5 of that scale leaves >10x room; a formula error is far
        # outside (a dropped mean(g * x-hat) term changes the input gradient by ~30%, an epsilon
        # outside the square root by 1e-3).
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * np.abs(a).max(), err_msg=f"tensor {index}")


def test_only_stock_last_axis_float32_layer_norms_are_switched_and_files_stay_stock(tmp_path):
    assert use_fused_layer_norm(_model(rms_scaling=True)) == []
    assert use_fused_layer_norm(_model(axis=[1, 2, 3])) == []
    assert fusable(_model(axis=3).get_layer("norm")) and fusable(_model(axis=[-1]).get_layer("norm"))
    assert switches_nothing_under("mixed_bfloat16", use_fused_layer_norm, _model)

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_layer_norm, tmp_path / "model.keras")
    assert "call" not in vars(loaded.get_layer("norm"))
    x = np.random.default_rng(3).normal(size=(4, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=0, atol=1e-5)
