"""Dense layers on inputs of rank 3 or more as one 2-D MatMul in training
(archbuilder/training/fused_dense.py): Keras's outputs and gradients bit for bit, a smaller
traced graph, model files unchanged."""

from __future__ import annotations

import numpy as np

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.fused_dense import fusable, matmul_last_axis, use_fused_dense  # noqa: E402
from archbuilder.training.fused_gelu import use_fused_gelu  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    outputs_and_gradients, switched_and_reloaded, switches_nothing_under, training_graph_ops, twin)

SWITCHED = ["no_bias", "on_sequence", "pointwise"]  # by use_fused_dense; gelu_dense is the GELU switch's


def _model():
    inputs = keras.Input((4, 5, 7))
    x = keras.layers.Dense(12, activation="relu", name="pointwise")(inputs)  # ConvNeXt's [B, H, W, C]
    x = keras.layers.Dense(6, use_bias=False, name="no_bias")(x)
    x = keras.layers.Reshape((20, 6))(x)
    x = keras.layers.Dense(9, activation="gelu", name="gelu_dense")(x)  # ViT's MLP: fused_gelu's call
    x = keras.layers.Dense(3, name="on_sequence")(x)  # [B, tokens, C]
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(2, name="rank_two")(x)  # Keras's plain MatMul already: left alone
    return keras.Model(inputs, x)


def _pair():
    keras.utils.set_random_seed(0)
    stock = _model()
    return stock, twin(stock)


def test_fused_dense_computes_kerass_outputs_and_gradients_bit_for_bit():
    stock, fused = _pair()
    assert use_fused_gelu(fused) == ["gelu_dense"]  # as train does: the GELU switch first
    assert sorted(use_fused_dense(fused)) == SWITCHED
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 4, 5, 7)).astype("float32")
    upstream = rng.normal(size=(16, 2)).astype("float32")
    gelu_only = twin(stock)
    use_fused_gelu(gelu_only)
    names = ["outputs", "input gradient"] + [w.path for w in stock.trainable_weights]
    # The same [rows, channels] x [channels, units] MatMuls as Keras's tensordot, so the same bits
    # (the GELU's own rounding is fused_gelu's, hence the comparison with a GELU-only twin).
    for name, want, have in zip(names, outputs_and_gradients(gelu_only, x, upstream),
                                outputs_and_gradients(fused, x, upstream)):
        np.testing.assert_array_equal(have, want, err_msg=name)


def test_the_traced_training_step_is_smaller():
    stock, fused = _pair()
    use_fused_dense(fused)

    stock_ops, fused_ops = (training_graph_ops(model, (4, 5, 7)) for model in (stock, fused))
    # tensordot with an unknown batch: shape, gather, prod, stack, concat and transpose ops around
    # each MatMul, and their gradients; here the three switched layers' products are 3 ops each.
    assert stock_ops - fused_ops >= 3 * 10, (stock_ops, fused_ops)


def test_matmul_last_axis_keeps_every_static_size_and_handles_unknown_ones():
    kernel = tf.constant(np.arange(12, dtype="float32").reshape(3, 4))
    x = tf.constant(np.linspace(-1, 1, 2 * 5 * 3, dtype="float32").reshape(2, 5, 3))
    np.testing.assert_array_equal(matmul_last_axis(x, kernel).numpy(), tf.tensordot(x, kernel, 1).numpy())
    for spec, static in ((tf.TensorSpec([None, 5, 3]), [None, 5, 4]), (tf.TensorSpec([None, None, 3]), [None, None, 4]),
                         (tf.TensorSpec([2, 5, 3]), [2, 5, 4])):
        traced = tf.function(lambda t: matmul_last_axis(t, kernel)).get_concrete_function(spec)
        assert traced.structured_outputs.shape.as_list() == static
        np.testing.assert_array_equal(traced(x).numpy(), tf.tensordot(x, kernel, 1).numpy())


def test_only_stock_float32_dense_layers_on_rank_3_or_more_are_switched_and_files_stay_stock(tmp_path):
    stock, _ = _pair()
    assert not fusable(stock.get_layer("rank_two"))
    # A layer shared by inputs of several shapes: each call reshapes by its own input's shape.
    shared = keras.layers.Dense(3, name="shared")
    a, b = keras.Input((2, 4)), keras.Input((5, 6, 4))
    two = keras.Model([a, b], [shared(a), shared(b)])
    inputs = [np.ones((3, 2, 4), "float32"), np.linspace(-1, 1, 360, dtype="float32").reshape(3, 5, 6, 4)]
    want = [t.numpy() for t in two(inputs)]
    assert use_fused_dense(two) == ["shared"]
    for have, expected in zip(two(inputs), want):
        np.testing.assert_array_equal(have.numpy(), expected)
    lora = _model()
    lora.get_layer("pointwise").enable_lora(2)
    assert "pointwise" not in use_fused_dense(lora)
    assert switches_nothing_under("mixed_bfloat16", use_fused_dense, _model)

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_dense, tmp_path / "model.keras")
    assert all("call" not in vars(loaded.get_layer(name)) for name in SWITCHED)
    x = np.random.default_rng(2).normal(size=(3, 4, 5, 7)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), stock.predict(x, verbose=0))
