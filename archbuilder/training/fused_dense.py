"""Dense layers on inputs of rank 3 or more as one 2-D matrix product: the same product, a smaller graph.

Keras's Dense multiplies its kernel into the last axis with `keras.ops.matmul`, which the
TensorFlow backend writes, for an input of rank > 2, as `tf.tensordot`
(keras/src/backend/tensorflow/numpy.py `matmul`). With the batch size unknown, as in the traced
training step, tensordot is a dozen shape ops (shape, gather, prod, concat, stack, a transpose by
the identity permutation) around its one MatMul, and the gradient tape adds as many again; a
py-spy profile of ConvNeXt-T's training-step trace put about a third of it (1.6 of 4.4 s) in
tensordot (bench/RESULTS.md, 2026-12-03, fourth session). ConvNeXt-T has 36 such
layers (its pointwise convolutions, on [B, H, W, C]), ViT-B/16 24 (its MLPs, on [B, 197, 768]).

Here the input is reshaped to [rows, C], multiplied by the kernel in one MatMul, and reshaped back
with the static sizes the layer knows. That is the product tensordot computes, on the same
[rows, C] and [C, units] matrices, so outputs and gradients are Keras's bit for bit
(tests/test_fused_dense.py), with fewer ops to trace and to optimize before the first step.

The switch is made on layer *instances* (instance_switch.py: their own `call`): model files stay
those of stock layers. A Dense with the exact GELU is fused_gelu.py's, which uses `dense_call`
with its fused GELU.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import plain_weights, switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped


def matmul_last_axis(x, kernel):
    """`x`'s last axis times the 2-D `kernel`, as one MatMul over [rows, channels]."""
    if x.shape.rank == 2:
        return tf.matmul(x, kernel)
    outer = x.shape[:-1].as_list()
    product = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)
    if None in outer[1:]:  # sizes known only when the step runs (e.g. a sequence's length)
        return tf.reshape(product, tf.concat([tf.shape(x)[:-1], tf.shape(kernel)[-1:]], 0))
    return tf.reshape(product, [-1 if outer[0] is None else outer[0], *outer[1:], kernel.shape[-1]])


def fusable(layer) -> bool:
    """A stock Dense layer on an input of rank 3 or more, computing in float32."""
    if type(layer) is not keras.layers.Dense or "call" in vars(layer):
        return False
    if not plain_weights(layer):
        return False
    if layer.compute_dtype != "float32" or layer.variable_dtype != "float32":
        return False
    try:  # a shared layer's first input; every call reshapes by its own input's shape
        shape = layer.input.shape
    except (AttributeError, ValueError):  # a layer not yet called
        return False
    return len(shape) > 2 and shape[-1] is not None


def activation_layer(layer, activation) -> bool:
    """A stock Activation layer, or a stock Dense layer (not LoRA, not quantized), whose activation
    is `activation`, computing in float32 and not yet switched: what the fused activations take."""
    if layer.compute_dtype != "float32" or "call" in vars(layer):
        return False
    if type(layer) is keras.layers.Activation:
        return layer.activation is activation
    if type(layer) is keras.layers.Dense:
        return layer.activation is activation and plain_weights(layer)
    return False


def recorded_activation(name: str, forward, gradient):
    """An elementwise activation of a float32 tensor: `forward(x)` (a compiled loop), with
    `gradient(x, upstream)` recorded on the tape as its gradient (tape_gradient.py), what the fused
    GELU and swish compute."""
    def activation(x):
        with untaped():
            outputs = forward(x)
        record_gradient(name, [outputs], [x], lambda upstream: [gradient(x, upstream)])
        return outputs

    return activation


def activation_layer_call(function):
    """The switched call of an `activation_layer`: `function` (a fused activation) applied to the
    input, or for a Dense layer to its 2-D product (`dense_call`)."""
    def make(layer):
        if type(layer) is keras.layers.Dense:
            return dense_call(layer, function)

        def call(inputs):
            return function(tf.convert_to_tensor(inputs))

        return call

    return make


def use_fused_dense(model) -> list[str]:
    """Switch every fusable Dense layer of `model` (see the module's docstring); their names.
    Nothing where TensorFlow sees a GPU."""
    return switch_instances(model, fusable, dense_call)


def dense_call(layer, activation=None):
    """keras.layers.Dense.call for `layer` with its product as one 2-D MatMul, then `activation`
    (fused_gelu.py's), or else the layer's own, read at each call as Keras does."""
    def call(inputs, training=None):
        x = matmul_last_axis(tf.convert_to_tensor(inputs), keras.ops.convert_to_tensor(layer.kernel))
        if layer.bias is not None:
            x = keras.ops.add(x, layer.bias)
        then = activation or layer.activation
        return x if then is None else then(x)

    return call
