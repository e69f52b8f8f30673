"""A residual Add's gradient recorded as the upstream gradient (archbuilder/training/fused_add.py):
Keras's outputs and gradients bit for bit, a smaller traced graph, model files unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402

from archbuilder.training.fused_add import fusable, use_fused_add  # noqa: E402
from archbuilder.training.precision import precision_policy  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    assert_same_outputs_and_gradients, summation_order_bound, switched_and_reloaded, switches_nothing_under,
    training_graph_ops, twin)

SWITCHED = ["residual", "three"]


def _model():
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Add(name="residual")([x, inputs])
    y = keras.layers.Conv2D(4, 1, name="pointwise")(x)
    x = keras.layers.Add(name="three")([x, y, inputs])  # Keras sums left to right
    row = keras.layers.Conv2D(4, (6, 1), name="row")(x)  # (1, 6, 4): broadcast over the rows
    x = keras.layers.Add(name="broadcast")([x, row])
    return keras.Model(inputs, keras.layers.Flatten()(x))


def _pair():
    keras.utils.set_random_seed(0)
    stock = _model()
    return stock, twin(stock)


@pytest.mark.parametrize("precision, dtype", [("float32", "float32"), ("mixed_bfloat16", "bfloat16")])
def test_fused_add_computes_kerass_outputs_bit_for_bit_and_its_gradients(precision, dtype):
    with precision_policy(precision):
        stock, fused = _pair()
        assert sorted(use_fused_add(fused)) == SWITCHED
        rng = np.random.default_rng(1)
        x = rng.normal(size=(5, 6, 6, 4)).astype("float32")
        upstream = rng.normal(size=(5, 144)).astype("float32")
        # The same AddV2 ops forward (on bfloat16 tensors under mixed_bfloat16); backward
        # TensorFlow's gradient sums over no axes: the upstream gradient itself, here handed on as
        # it is, so every later sum adds the same values (in an order TensorFlow does not fix, in
        # the tensors' dtype).
        assert_same_outputs_and_gradients(stock, fused, x, upstream,
                                          gradient_bound=lambda values: summation_order_bound(values, dtype))


def test_the_traced_training_step_is_smaller():
    stock, fused = _pair()
    use_fused_add(fused)
    stock_ops, fused_ops = (training_graph_ops(model, (6, 6, 4)) for model in (stock, fused))
    # Each input's broadcast reduction (two Shapes, BroadcastGradientArgs, a Sum and a Reshape
    # each), 7 ops for two inputs: five inputs in the two switched adds.
    assert stock_ops - fused_ops >= 2 * 7, (stock_ops, fused_ops)


def test_only_same_shape_adds_are_switched_and_files_stay_stock(tmp_path):
    stock, _ = _pair()
    assert not fusable(stock.get_layer("broadcast"))
    shared = keras.layers.Add(name="shared")
    a, b, c = keras.Input((3,)), keras.Input((3,)), keras.Input((1,))
    keras.Model([a, b, c], shared([shared([a, b]), c]))
    assert not fusable(shared)  # its second call broadcasts
    assert switches_nothing_under("mixed_float16", use_fused_add, _model)

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_add, tmp_path / "model.keras")
    assert all("call" not in vars(loaded.get_layer(name)) for name in SWITCHED)
    x = np.random.default_rng(2).normal(size=(3, 6, 6, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), stock.predict(x, verbose=0))
