"""Layer norm in training as one fused loop forward and one backward: the same math, fewer passes.

Keras 3 writes a layer norm over the last axis as moments, rsqrt, and two multiply-adds
(keras/src/ops/nn.py `_layer_normalization`), and the gradient tape adds about twice as many ops
for the backward pass: each one a pass over the layer's whole input. ConvNeXt has one per block
(at full resolution) and ViT two per encoder layer. Here the forward pass is one XLA-compiled
function, and the backward pass two more and four matrix-vector products, written from the
formula instead of differentiating the ops (x-hat = (x - mean) * r, r = 1 / sqrt(variance +
epsilon), g = upstream * gamma):

    dx = r * (g - mean(g) - x-hat * mean(g * x-hat))       means over the normalized (last) axis
    d gamma = sum over the other axes of upstream * x-hat,  d beta = sum of upstream

The backward pass's sums are matrix-vector products over the input seen as [rows, channels]
(mean(g) and mean(g * x-hat) per row: upstream and upstream * x-hat times gamma; d gamma and
d beta per channel: the same two times a vector of ones), which oneDNN runs on every core, where
XLA's CPU reductions and TensorFlow's column sums are several times slower. Forward and
gradients of a [32, 197, 768] input (ViT-B/16) take 27 ms that way instead of 41 (Keras's ops
63, PyTorch 23), of a [32, 56, 56, 96] one (ConvNeXt-T's first stage) 56 ms instead of 98
(Keras's 124, PyTorch 71) on an Intel Xeon with AMX (bench/layer_norm.py, bench/RESULTS.md).
Only where it is Keras's math: a stock `LayerNormalization` over the last axis, without RMS
scaling, in float32. Outputs and gradients agree with Keras's to float32 rounding
(tests/test_fused_layer_norm.py).

The switch is made on layer *instances* (instance_switch.py: their own `call`): model files
are those of stock layers, and a model loaded for --resume is switched again.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _forward(x, gamma, beta, epsilon):
    mean = tf.reduce_mean(x, -1, keepdims=True)
    centered = x - mean
    reciprocal = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), -1, keepdims=True) + epsilon)
    return centered * reciprocal * gamma + beta, mean, reciprocal


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _upstream_times_normalized(x, mean, reciprocal, upstream):
    return upstream * ((x - mean) * reciprocal)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _input_gradient(x, gamma, mean, reciprocal, upstream, sum_g, sum_g_normalized):
    channels = tf.cast(tf.shape(x)[-1], x.dtype)
    normalized = (x - mean) * reciprocal
    return reciprocal * (upstream * gamma - sum_g / channels - normalized * (sum_g_normalized / channels))


def fused_layer_norm(x, gamma, beta, epsilon: float):
    """Layer norm of float32 `x` over its last axis, scaled by `gamma` and shifted by `beta`."""
    epsilon = tf.constant(epsilon, tf.float32)
    # Tensors (a variable read once each, on the tape): the gradient is recorded for them below.
    x, gamma, beta = (tf.convert_to_tensor(t) for t in (x, gamma, beta))
    with untaped():
        outputs, mean, reciprocal = _forward(x, gamma, beta, epsilon)

    def gradient(upstream):
        # Row and column sums as matrix-vector products over [rows, channels] (see the docstring).
        scaled = _upstream_times_normalized(x, mean, reciprocal, upstream)
        upstream_rows, scaled_rows = (tf.reshape(t, [-1, x.shape[-1]]) for t in (upstream, scaled))
        sum_g = tf.reshape(tf.linalg.matvec(upstream_rows, gamma), tf.shape(mean))
        sum_g_normalized = tf.reshape(tf.linalg.matvec(scaled_rows, gamma), tf.shape(mean))
        dx = _input_gradient(x, gamma, mean, reciprocal, upstream, sum_g, sum_g_normalized)
        ones = tf.ones(tf.shape(upstream_rows)[:1], x.dtype)
        return (dx, tf.linalg.matvec(scaled_rows, ones, transpose_a=True),
                tf.linalg.matvec(upstream_rows, ones, transpose_a=True))

    record_gradient("LayerNorm", [outputs], [x, gamma, beta], gradient)  # tape_gradient.py
    return outputs


def fusable(layer) -> bool:
    """A stock Keras layer norm over the last axis of its input, without RMS scaling, in float32."""
    if type(layer) is not keras.layers.LayerNormalization or layer.rms_scaling or "call" in vars(layer):
        return False
    if layer.compute_dtype != "float32" or layer.variable_dtype != "float32":
        return False
    try:
        rank = len(layer.input.shape)
        channels = layer.input.shape[-1]
    except (AttributeError, ValueError):  # a layer not yet called, or shared by several inputs
        return False
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return channels is not None and [axis % rank for axis in axes] == [rank - 1]


def use_fused_layer_norm(model) -> list[str]:
    """Switch every fusable layer norm of `model` (see the module's docstring); their names.
    Nothing where TensorFlow sees a GPU."""
    return switch_instances(model, fusable, _fused_call)


def _fused_call(layer):
    def call(inputs):
        channels = inputs.shape[-1]
        gamma = keras.ops.convert_to_tensor(layer.gamma) if layer.scale else tf.ones([channels])
        beta = keras.ops.convert_to_tensor(layer.beta) if layer.center else tf.zeros([channels])
        return fused_layer_norm(tf.convert_to_tensor(inputs), gamma, beta, layer.epsilon)

    return call
