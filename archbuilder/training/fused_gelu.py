"""GELU as one fused loop forward and one backward: the same function, a fraction of the memory traffic.

The exact (erf) GELU that ConvNeXt and ViT use, x * Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2,
runs on TensorFlow's CPU as five elementwise ops forward (`tf.nn.gelu`: multiply, erf, add,
multiply, multiply) and about twice as many in its gradient, each a full pass over the widest
tensor of the network (ConvNeXt's and ViT's 4x MLP expansion): ~16 passes where PyTorch runs one
kernel each way. Here both directions are one XLA-compiled function each, which XLA fuses into a
single loop, and the gradient is written from the derivative instead of differentiating the ops:

    d/dx [x * Phi(x)] = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

Forward plus gradient of a [32, 56, 56, 384] float32 tensor (ConvNeXt-T's first stage) took 432 ms
as Keras's ops and 133 ms fused on an Intel Xeon (PyTorch: 280 ms; bench/RESULTS.md). XLA's erf is
its own float32 polynomial, not Eigen's: outputs and gradients differ from Keras's by float32
rounding (tests/test_fused_gelu.py bounds it).

Only the convolution-free part is compiled: XLA's CPU convolutions are what grouped_conv.py keeps
away from. The switch is made on layer *instances* (instance_switch.py: their own `call`),
never on the class or on the `activation` attribute (which their config saves): model files stay
those of stock layers, and a model loaded for --resume is switched again. It applies to stock
`Activation('gelu')` and `Dense(activation='gelu')` layers computing in float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.fused_dense import activation_layer, activation_layer_call, recorded_activation
from archbuilder.training.instance_switch import switch_instances

_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _gelu_forward(x):
    return x * (0.5 * (1.0 + tf.math.erf(x * _SQRT_HALF)))


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _gelu_gradient(x, upstream):
    cdf = 0.5 * (1.0 + tf.math.erf(x * _SQRT_HALF))
    return upstream * (cdf + x * _INV_SQRT_2PI * tf.exp(-0.5 * x * x))


# Exact GELU of a float32 tensor, one fused loop each way (see the module's docstring).
fused_gelu = recorded_activation("Gelu", _gelu_forward, _gelu_gradient)


def fusable(layer) -> bool:
    """A stock Activation or Dense layer with the exact GELU, computing in float32. The name
    `gelu` resolves to keras.activations.gelu, whose default is the erf form; the tanh form
    (`gelu_tanh`) is a keras.src.ops.nn.Gelu object and is left alone."""
    return activation_layer(layer, keras.activations.gelu)


def use_fused_gelu(model) -> list[str]:
    """Switch every fusable GELU layer of `model` (see the module's docstring); their names.
    Nothing where TensorFlow sees a GPU (its GELU kernels are already fused there)."""
    return switch_instances(model, fusable, activation_layer_call(fused_gelu))
