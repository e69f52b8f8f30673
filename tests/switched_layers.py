"""For the tests of training kernels switched on layer instances (fused GELU, fused layer norm):
a model and its switched twin compared on outputs and every gradient."""

from __future__ import annotations

import keras
import tensorflow as tf


def twin(stock):
    """A copy of `stock` with its weights, for the switch to be made on."""
    copy = keras.models.clone_model(stock)
    copy.set_weights(stock.get_weights())
    return copy


def outputs_and_gradients(model, x, upstream) -> list:
    """`model`'s training-mode outputs on `x`, then the gradients of sum(outputs * upstream) for
    `x` and for each trainable weight, inside a tf.function (as in training), as numpy arrays."""
    @tf.function
    def run(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = model(inputs, training=True)
            loss = tf.reduce_sum(outputs * upstream)
        return [outputs, *tape.gradient(loss, [inputs, *model.trainable_weights])]

    return [t.numpy() for t in run(tf.constant(x))]
