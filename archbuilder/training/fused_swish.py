"""Swish (SiLU) in training as one compiled loop each way, its gradient written out: a tenth of the ops.

EfficientNet's activation, x * sigmoid(x), is `tf.nn.silu` under Keras's TensorFlow backend. That
op takes a `beta` (x * sigmoid(beta * x)) and its custom gradient differentiates for both: it
recomputes sigmoid(beta * x) after the upstream gradient arrives (to free it in the forward pass),
and builds beta's gradient, a reduction of dy * x^2 * s * (1 - s) that nothing uses since Keras's
beta is the constant 1: 26 ops an activation in the traced training step, of which grappler
later prunes the dead ones; tracing and grappler pay for all of them (~0.9 ms an op traced on a
first-generation EPYC; bench/RESULTS.md). EfficientNet-B0 has 49 swish activations: 1,274 of the
5,195 ops of its training graph at 224x224.

Here each direction is one XLA-compiled loop (as fused_gelu.py's), and the gradient is the
derivative written out, from x, with the sigmoid recomputed inside the loop:

    y = x * s,  s = sigmoid(x);   d/dx [x * s] = s + x * s * (1 - s)

TensorFlow's Sigmoid and Mul made two passes forward (the sigmoid written out, then read back with
x); the gradient, as four TensorFlow ops, four passes, two of them writing a temporary. On the
AVX-512 Zen 5, one [32, 112, 112, 96] float32 activation (EfficientNet-B0's widest): forward 18.7
ms as TensorFlow's two ops, 7.0 ms compiled; the gradient 28.4 ms as four ops, 12.9 ms compiled
from s and y (this switch's previous form), 10.6 ms compiled from x (one tensor fewer read; the exp
costs less than the read on this memory; PyTorch's silu 4.8 ms, silu_backward 6.7 ms). The pass's x
is kept for the gradient in place of s: one tensor an activation either way (the next layer's
gradient keeps y, batch norm's keeps its own input, not this x); `train`'s peak RSS for
EfficientNet-B0 at batch 32 was 3.96-4.12 GiB in five runs after this change and the strided folds
(fused_padding.py), 5.00 GiB in two before (bench/RESULTS.md, thirteenth session). Whole training
steps of EfficientNet-B0 at batch 32 ran 1.05x faster than with the forward as TensorFlow's ops and
the gradient from s and y (1.046-1.053 in three A/Bs), -B1's 1.05-1.08x (bench/RESULTS.md,
thirteenth session).

XLA's sigmoid is its own float32 approximation (within 2.5 ulps of the exact value over
[-100, 100] on the Zen 5, where Eigen's, Keras's, came within 8.2): outputs and gradients differ from
Keras's by float32 rounding (tests/test_fused_swish.py bounds both against the exact float64
values), as fused_gelu.py's do. 2 ops an activation in the traced step (the two compiled calls;
tape_gradient.py records the gradient).

The switch is made on layer *instances* (instance_switch.py: their own `call`), never on the
class or on the `activation` attribute (which their config saves): model files stay those of
stock layers, and a model loaded for --resume is switched again. It applies to stock
`Activation('swish')` / `Activation('silu')` and `Dense(activation='swish')` layers computing in
float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.fused_dense import activation_layer, activation_layer_call, recorded_activation
from archbuilder.training.instance_switch import switch_instances


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _swish_forward(x):
    return x * tf.sigmoid(x)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _swish_gradient(x, upstream):
    sigmoid = tf.sigmoid(x)
    return upstream * (sigmoid + x * sigmoid * (1.0 - sigmoid))


# x * sigmoid(x) of a float32 tensor, one compiled loop each way (the module's docstring).
fused_swish = recorded_activation("Swish", _swish_forward, _swish_gradient)


def fusable(layer) -> bool:
    """A stock Activation or Dense layer with swish (SiLU), computing in float32 ('swish' and
    'silu' both resolve to keras.activations.silu)."""
    return activation_layer(layer, keras.activations.silu)


def use_fused_swish(model) -> list[str]:
    """Switch every fusable swish layer of `model` (see the module's docstring); their names.
    Nothing where TensorFlow sees a GPU."""
    return switch_instances(model, fusable, activation_layer_call(fused_swish))
