"""Swish (SiLU) in training with its gradient written out: a quarter of the ops, no second sigmoid.

EfficientNet's activation, x * sigmoid(x), is `tf.nn.silu` under Keras's TensorFlow backend. That
op takes a `beta` (x * sigmoid(beta * x)) and its custom gradient differentiates for both: it
recomputes sigmoid(beta * x) after the upstream gradient arrives (to free it in the forward pass),
and builds beta's gradient, a reduction of dy * x^2 * s * (1 - s) that nothing uses since Keras's
beta is the constant 1: 26 ops an activation in the traced training step, of which grappler
later prunes the dead ones; tracing and grappler pay for all of them (~0.9 ms an op traced on a
first-generation EPYC; bench/RESULTS.md). EfficientNet-B0 has 49 swish activations: 1,274 of the
5,195 ops of its training graph at 224x224.

Here the gradient is the derivative written from what the forward pass already holds, the sigmoid
s and the output y = x * s:

    d/dx [x * s(x)] = s + x * s * (1 - s) = s + y * (1 - s)

No transcendental backward (TensorFlow's recomputes the sigmoid: an exp over the tensor), and
one pass: the formula's four elementwise ops compiled by XLA into a single loop that reads the
upstream gradient, s and y once (as fused_gelu.py does). As four TensorFlow ops they made four
passes over each activation, two of them writing a temporary: a [32, 112, 112, 96] float32
gradient (EfficientNet-B0's widest) took 28.4 ms that way and 13.9 ms fused; EfficientNet-B0's
training step at 224x224, batch 32, ran 1.026-1.040x faster (bench/RESULTS.md). The forward
pass stays TensorFlow's Sigmoid and Mul, so its values stay Keras's bit for bit (XLA's logistic
rounds differently). 3 ops an activation in all (tape_gradient.py records the gradient). The
sigmoid is kept for the backward pass instead of x, which nothing else needs once y exists (the
next layer's gradient keeps y, batch norm's keeps its own input), so the memory held for it stays
one tensor an activation (EfficientNet-B0's peak RSS over three steps at 224x224 was 1-4% higher
in single runs; with the gradient compiled, peaks of 5.0 GiB in every run where the ops apart
reached 5.0 in two runs of three and 4.0 in one: TensorFlow's executor orders a step's ops
differently from run to run). The forward values are TensorFlow's (beta = 1 multiplies exactly);
the gradient differs from TensorFlow's formula by float32 rounding (XLA may also contract a
multiply and an add into one rounding; tests/test_fused_swish.py bounds it).

The switch is made on layer *instances* (instance_switch.py: their own `call`), never on the
class or on the `activation` attribute (which their config saves): model files stay those of
stock layers, and a model loaded for --resume is switched again. It applies to stock
`Activation('swish')` / `Activation('silu')` and `Dense(activation='swish')` layers computing in
float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.fused_dense import activation_layer, activation_layer_call
from archbuilder.training.instance_switch import switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _swish_gradient(sigmoid, y, upstream):
    return upstream * (sigmoid + y * (1.0 - sigmoid))


def fused_swish(x):
    """x * sigmoid(x) of a float32 tensor, with the gradient s + y * (1 - s) in one compiled loop
    (the module's docstring)."""
    with untaped():
        sigmoid = tf.sigmoid(x)
        y = x * sigmoid
    record_gradient("Swish", [y], [x], lambda upstream: [_swish_gradient(sigmoid, y, upstream)])
    return y


def fusable(layer) -> bool:
    """A stock Activation or Dense layer with swish (SiLU), computing in float32 ('swish' and
    'silu' both resolve to keras.activations.silu)."""
    return activation_layer(layer, keras.activations.silu)


def use_fused_swish(model) -> list[str]:
    """Switch every fusable swish layer of `model` (see the module's docstring); their names.
    Nothing where TensorFlow sees a GPU."""
    return switch_instances(model, fusable, activation_layer_call(fused_swish))
