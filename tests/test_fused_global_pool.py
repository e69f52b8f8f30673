"""Global average pooling's gradient with the window's size known
(archbuilder/training/fused_global_pool.py): Keras's outputs and gradients bit for bit, a smaller
traced graph, model files unchanged."""

from __future__ import annotations

import numpy as np

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402

from archbuilder.training.fused_global_pool import fusable, use_fused_global_pool  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    assert_same_outputs_and_gradients, summation_order_bound, switched_and_reloaded, switches_nothing_under,
    training_graph_ops, twin)

SWITCHED = ["head_pool", "squeeze"]


def _model():
    inputs = keras.Input((7, 5, 6))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    squeezed = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)  # squeeze-excite
    x = keras.layers.Multiply(name="excite")([x, keras.layers.Conv2D(6, 1, activation="sigmoid")(squeezed)])
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)  # a classifier's head
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def _pair():
    keras.utils.set_random_seed(0)
    stock = _model()
    return stock, twin(stock)


def test_fused_global_pool_computes_kerass_outputs_bit_for_bit_and_its_gradients():
    stock, fused = _pair()
    assert sorted(use_fused_global_pool(fused)) == SWITCHED
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7, 5, 6)).astype("float32")
    upstream = rng.normal(size=(4, 3)).astype("float32")
    # The same Mean forward; backward the same broadcast divided by the same count (35) in float32,
    # summed with the excite path's gradient in an order TensorFlow does not fix.
    assert_same_outputs_and_gradients(stock, fused, x, upstream, gradient_bound=summation_order_bound)


def test_the_traced_training_step_is_smaller():
    stock, fused = _pair()
    use_fused_global_pool(fused)
    stock_ops, fused_ops = (training_graph_ops(model, (7, 5, 6)) for model in (stock, fused))
    # The count computed from the runtime shape (Shape, Size, AddV2, FloorMod, GatherV2, Prod, Cast
    # and constants) in both layers, and the head's reshape through a computed shape.
    assert stock_ops - fused_ops >= 2 * 8, (stock_ops, fused_ops)


def test_only_channels_last_float32_layers_are_switched_and_files_stay_stock(tmp_path):
    assert not fusable(keras.layers.GlobalAveragePooling2D(data_format="channels_first"))
    assert not fusable(keras.layers.GlobalMaxPooling2D())
    assert switches_nothing_under("mixed_bfloat16", use_fused_global_pool, _model)

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_global_pool, tmp_path / "model.keras")
    assert all("call" not in vars(loaded.get_layer(name)) for name in SWITCHED)
    x = np.random.default_rng(2).normal(size=(3, 7, 5, 6)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), stock.predict(x, verbose=0))
