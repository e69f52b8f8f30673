"""A squeeze-and-excitation block's input gradient as one expression: dy * g + dp / (H * W).

A squeeze-and-excitation block (SE-ResNet's, EfficientNet's) averages its input x over the map
(GlobalAveragePooling2D with keepdims: p), computes a per-channel gate g from p (1x1 convolutions
and activations), and multiplies x by g. So x has two gradients: the multiply's, dy * g, and the
pool's, dp broadcast over the map and divided by H * W. TensorFlow writes the broadcast out
(BroadcastTo), divides it, and adds the two with an AddN: four passes over a tensor of the block's
input size where two do. Here the multiply's gradient hands dy and g to the pool's gradient,
which returns dy * g + dp / (H * W), the division before the broadcast and the broadcast inside
the add: the same two terms, each the same float32 values as TensorFlow's (the division is the
same one, per channel instead of per position), added once, so the same sums bit for bit (float
addition of two terms is commutative). Whole training steps on the AVX-512 Zen 5 at batch 32,
with `train`'s other switches on both sides (`bench/fused_kernels.py NAME --kernels
squeeze_excite --as-train`, bench/RESULTS.md): EfficientNet-B0 1.02x, EfficientNet-B1 1.024x,
SE-ResNet-50 1.013-1.034x over three A/Bs; most of the gain is at the largest maps.

The hand-over relies on the order in which a gradient tape differentiates: the pool's gradient
needs the gate's, which needs the multiply's, so the multiply's runs first. And TensorFlow's tape
runs the gradient of every recorded op that the target's gradient reaches, so the pool's then runs
in the same computation, where the gate is computed from p alone through a chain of single-input
layers whose gradients always reach their input (GATE_PATH), each with one consumer:
`squeeze_excite_pairs` takes only such blocks. Each forward call has its own hand-over (a model
called twice pairs each pool with its own multiply, each thread its own: a strategy's replicas),
and each gradient computation puts its own dy there (two gradients of a persistent tape); where
the multiply has no hand-over, its gradient of x is TensorFlow's dy * g and the pool's its
broadcast. Only channels-last float32 blocks with the map's size known; the switch is made on
layer *instances* (instance_switch.py), so model files stay those of stock layers.
"""

from __future__ import annotations

import threading

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import gpu_present, sole_consumer
from archbuilder.training.tape_gradient import record_gradient, untaped

# Single-input layers whose gradient always reaches their input (no integer casts, no stop).
GATE_PATH = (keras.layers.Conv2D, keras.layers.Dense, keras.layers.Activation, keras.layers.ReLU,
             keras.layers.Reshape)


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history else None


def _gate_source(gate):
    """The layer at the start of the gate's chain of GATE_PATH layers: the pool, if it is one."""
    layer = _producer(gate)
    while type(layer) in GATE_PATH and sole_consumer(layer) is not None:
        layer = _producer(layer.input)
    return layer


def squeeze_excite_pairs(model) -> list[tuple]:
    """(pool, multiply, x_first) of every block of `model` the switch takes: a float32
    channels-last GlobalAveragePooling2D with keepdims of a 4-D x of known size, used once, whose
    output leads through GATE_PATH layers alone to the gate of a two-input Multiply of x and that
    gate ([N, 1, 1, C]); x_first: x is the multiply's first input."""
    pairs = []
    for multiply in model._flatten_layers(include_self=False):
        if (type(multiply) is not keras.layers.Multiply or "call" in vars(multiply)
                or len(multiply._inbound_nodes) != 1 or multiply.compute_dtype != "float32" or len(multiply.input) != 2):
            continue
        for x_first, (x, gate) in ((True, multiply.input), (False, multiply.input[::-1])):
            pool = _gate_source(gate)
            if (type(pool) is keras.layers.GlobalAveragePooling2D and "call" not in vars(pool) and pool.keepdims
                    and pool.data_format == "channels_last" and pool.compute_dtype == "float32"
                    and sole_consumer(pool) is not None and pool.input is x
                    and len(x.shape) == 4 and None not in x.shape[1:] and tuple(gate.shape[1:]) == (1, 1, x.shape[3])):
                pairs.append((pool, multiply, x_first))
                break
    return pairs


def use_fused_squeeze_excite(model) -> list[str]:
    """Switch the pool and multiply of every block `squeeze_excite_pairs` finds (see the module's
    docstring); the switched layers' names. Nothing where TensorFlow sees a GPU."""
    if gpu_present():
        return []
    names = []
    for pool, multiply, x_first in squeeze_excite_pairs(model):
        # (x, hand-over) of the pool's latest call in this thread, for the multiply's next call
        # (a strategy with several replicas in one process calls the model from a thread each).
        pending = threading.local()
        pool.call = _pool_call(pool, pending)
        multiply.call = _multiply_call(x_first, pending)
        names += [pool.name, multiply.name]
    return names


def _pool_call(layer, pending):
    def call(inputs):
        inputs = tf.convert_to_tensor(inputs)
        height, width = inputs.shape[1:3]
        with untaped():
            outputs = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        handed: list = []  # the multiply's (dy, g), put there by its gradient
        pending.last = (inputs, handed)

        def gradient(upstream):
            scaled = upstream / tf.constant(height * width, inputs.dtype)  # [N, 1, 1, C]
            if handed:
                upstream_of_multiply, gate = handed.pop()
                return [upstream_of_multiply * gate + scaled]
            return [tf.broadcast_to(scaled, tf.shape(inputs))]

        record_gradient("SqueezeExcitePool", [outputs], [inputs], gradient)
        return outputs

    return call


def _multiply_call(x_first, pending):
    def call(inputs):
        x, gate = (tf.convert_to_tensor(t) for t in (inputs if x_first else inputs[::-1]))
        # The hand-over of the pool call on this very x (a model called twice pairs each with its own).
        last, pending.last = getattr(pending, "last", None), None
        handed = last[1] if last is not None and last[0] is x else None
        with untaped():
            outputs = x * gate

        def gradient(upstream):
            gate_gradient = tf.reduce_sum(upstream * x, axis=[1, 2], keepdims=True)
            if handed is None:
                x_gradient = upstream * gate
            else:
                handed[:] = [(upstream, gate)]
                x_gradient = None  # the pool's gradient adds it
            return [x_gradient, gate_gradient] if x_first else [gate_gradient, x_gradient]

        record_gradient("SqueezeExciteMultiply", [outputs], [x, gate] if x_first else [gate, x], gradient)
        return outputs

    return call
