"""A squeeze-and-excitation block's input gradient as one expression
(archbuilder/training/fused_squeeze_excite.py): Keras's outputs and gradients bit for bit, the
broadcast and the AddN gone from the traced step, only the blocks whose hand-over is safe, model
files unchanged."""

from __future__ import annotations

import numpy as np

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.fused_squeeze_excite import squeeze_excite_pairs, use_fused_squeeze_excite  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    assert_same_outputs_and_gradients, switched_and_reloaded, switches_nothing_under, training_graph, twin)

SHAPE = (7, 5, 6)


def _squeeze_excite(x, name, gate_first=False):
    """SE-ResNet's block (tests/specs and architectures/blocks/resnet_torch.yaml write it so)."""
    squeezed = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    hidden = keras.layers.Conv2D(2, 1, name=f"{name}_reduce")(squeezed)
    hidden = keras.layers.Activation("relu")(hidden)
    gate = keras.layers.Conv2D(x.shape[-1], 1, activation="sigmoid", name=f"{name}_expand")(hidden)
    pair = [gate, x] if gate_first else [x, gate]
    return keras.layers.Multiply(name=f"{name}_excite")(pair)


def _model():
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = _squeeze_excite(x, "se1")
    x = keras.layers.Conv2D(6, 1, name="project")(x)
    x = _squeeze_excite(x, "se2", gate_first=True)  # either order of the multiply's inputs
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def _pair(make=_model):
    keras.utils.set_random_seed(0)
    stock = make()
    return stock, twin(stock)


def _inputs(seed, batch=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, *SHAPE)).astype("float32"), rng.normal(size=(batch, 3)).astype("float32")


def test_the_switched_blocks_compute_kerass_outputs_and_gradients_bit_for_bit():
    stock, fused = _pair()
    assert sorted(use_fused_squeeze_excite(fused)) == ["se1_excite", "se1_squeeze", "se2_excite", "se2_squeeze"]
    # x's gradient: the same dy * g and the same dp / 35 per channel, added once where TensorFlow
    # adds the same two float32 terms in an AddN (two terms: the order cannot matter).
    assert_same_outputs_and_gradients(stock, fused, *_inputs(1))


def test_the_broadcast_and_the_addn_leave_the_traced_step():
    stock, fused = _pair()
    use_fused_squeeze_excite(fused)
    counts = [[op.type for op in training_graph(model, SHAPE).get_operations()] for model in (stock, fused)]
    # Per block TensorFlow's pool gradient broadcasts (BroadcastTo) and the tape adds the two
    # gradients of x (AddN); the head's pool keeps its broadcast. A hand-over that never happened
    # (the multiply's gradient of x kept, the pool's broadcast) would leave both counts as they are.
    assert counts[0].count("BroadcastTo") - counts[1].count("BroadcastTo") == 2, counts
    assert counts[0].count("AddN") - counts[1].count("AddN") >= 2


def test_a_model_called_twice_in_one_tape_pairs_each_pool_with_its_own_multiply():
    stock, fused = _pair()
    use_fused_squeeze_excite(fused)
    x, upstream = _inputs(2)
    y = x[::-1] * 0.5

    def gradients(model):
        a, b = tf.constant(x), tf.constant(y)
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss = tf.reduce_sum((model(a, training=True) - 2 * model(b, training=True)) * upstream)
        return tape.gradient(loss, [a, b, *model.trainable_weights])

    for want, have in zip(gradients(stock), gradients(fused)):
        np.testing.assert_array_equal(have.numpy(), want.numpy())


def test_each_gradient_of_a_persistent_tape_hands_over_its_own_upstream_gradient():
    stock, fused = _pair()
    use_fused_squeeze_excite(fused)
    x, first = _inputs(3)
    second = -2 * first[::-1]

    def two_gradients(model):
        with tf.GradientTape(persistent=True) as tape:
            inputs = tf.constant(x)
            tape.watch(inputs)
            outputs = model(inputs, training=True)
            losses = [tf.reduce_sum(outputs * upstream) for upstream in (first, second)]
        return [tape.gradient(loss, [inputs, *model.trainable_weights]) for loss in losses]

    # The second gradient's hand-over is its own dy, not one the first gradient left behind.
    for want, have in zip(two_gradients(stock), two_gradients(fused)):
        for a, b in zip(want, have):
            np.testing.assert_array_equal(b.numpy(), a.numpy())


def test_a_pool_called_in_one_thread_hands_nothing_to_a_multiply_in_another():
    # MirroredStrategy over logical CPUs (`--distribute mirrored --devices N`) calls the model from
    # one thread per replica: a hand-over taken by another replica's multiply would give it the
    # other's dy. Here a pool runs in one thread and a multiply of the same x in this one: the
    # multiply keeps its own gradient of x, dy * g.
    import threading

    stock, fused = _pair()
    use_fused_squeeze_excite(fused)
    pool, multiply = fused.get_layer("se1_squeeze"), fused.get_layer("se1_excite")
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(4, *SHAPE)).astype("float32"))
    gate = tf.constant(rng.uniform(size=(4, 1, 1, SHAPE[2])).astype("float32"))
    upstream = rng.normal(size=(4, *SHAPE)).astype("float32")
    other = threading.Thread(target=pool.call, args=(x,))
    other.start()
    other.join()
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = multiply.call([x, gate])
    gradient = tape.gradient(outputs, x, output_gradients=tf.constant(upstream))
    assert gradient is not None
    np.testing.assert_array_equal(gradient.numpy(), upstream * gate.numpy())


def test_only_blocks_whose_gate_comes_from_the_pool_alone_are_switched():
    def shared_pool():  # the pooled values also feed the head: the pool's gradient is not the gate's alone
        inputs = keras.Input(SHAPE)
        squeezed = keras.layers.GlobalAveragePooling2D(keepdims=True)(inputs)
        gate = keras.layers.Conv2D(6, 1, activation="sigmoid")(squeezed)
        x = keras.layers.Multiply()([inputs, gate])
        return keras.Model(inputs, [x, keras.layers.Flatten()(squeezed)])

    def other_gate():  # the gate is computed from another tensor than the pooled one
        inputs = keras.Input(SHAPE)
        keras.layers.GlobalAveragePooling2D(keepdims=True)(inputs)
        gate = keras.layers.Conv2D(6, 1, activation="sigmoid")(keras.layers.GlobalMaxPooling2D(keepdims=True)(inputs))
        return keras.Model(inputs, keras.layers.Multiply()([inputs, gate]))

    def stopped_gate():  # a layer that may not carry the gate's gradient back to the pool
        inputs = keras.Input(SHAPE)
        squeezed = keras.layers.GlobalAveragePooling2D(keepdims=True)(inputs)
        gate = keras.layers.Dropout(0.5)(keras.layers.Conv2D(6, 1)(squeezed))
        return keras.Model(inputs, keras.layers.Multiply()([inputs, gate]))

    for make in (shared_pool, other_gate, stopped_gate):
        assert squeeze_excite_pairs(make()) == [], make.__name__
    assert switches_nothing_under("mixed_bfloat16", use_fused_squeeze_excite, _model)


def test_files_stay_stock(tmp_path):
    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_squeeze_excite, tmp_path / "model.keras")
    assert all("call" not in vars(layer) for layer in loaded.layers)
    x = _inputs(4)[0]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), stock.predict(x, verbose=0))
