"""1x1 convolutions as matrix products in training, for the shapes where that measured faster on
the running CPU (pointwise_choice.py): the same sums, other kernels.

A 1x1 convolution with stride 1 is a matrix product: the [N, H, W, C] input viewed as N*H*W rows
of C values, times the [C, F] kernel. Its gradients are products too (input: dY W^T; kernel:
X^T dY), and TensorFlow differentiates the product into exactly those two. oneDNN runs the
convolution form with kernels that block channels in 16s on AVX-512, and EfficientNet's thin
layers (24, 40 channels; 16-144 in and out) lose there: on the Zen 5 at batch 32, forward pass
plus both gradients of 56x56x24 -> 144 and 28x28x40 -> 240 took 0.74x of TensorFlow's time as
products, 112x112x32 -> 16 0.85x, while ResNet-50's wide layers gained 0-6% or lost (14x14x256
-> 1024: 1.06x the time; bench/RESULTS.md). Which wins is the CPU's and the batch's (at batch 8
the same shapes ordered differently), so `train` times each shape at the run's batch, once.

The product sums each output's C terms in another order than oneDNN's convolution, so results
differ by float32 rounding within the dot product's own bound (tests/test_pointwise_conv.py
checks it against the exact float64 sums). Only stock float32 layers switch (in bfloat16 the
products would accumulate differently again), and only on CPU.

A SeparableConv2D is a depthwise convolution then such a 1x1 convolution (`tf.nn.separable_conv2d`:
depthwise_conv2d, then conv2d 1x1 VALID). Xception's are wide (728 channels in and out at 19x19
in its middle flow, 24 layers), and there too the product won on the Zen 5: forward and both
gradients of the 1x1 half 0.87x of TensorFlow's time at batch 32, 37x37x256 -> 728 0.92x,
10x10x728 -> 1024 0.89x (bench/RESULTS.md). `separable_call` keeps the depthwise half
TensorFlow's op (its outputs bit for bit) and computes the 1x1 half as the product.

The switch is made on layer *instances*, by giving them their own `convolution_op` (the hook
Keras's convolution layers call; fused_conv_bias.py's call keeps calling it), or a separable
layer its own `call`: model files are those of stock layers, and a model loaded for --resume is
switched again.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.fused_conv_bias import bias_and_activation
from archbuilder.training.instance_switch import float32_layer, known_map, plain_weights


def candidate(layer) -> bool:
    """A stock channels-last Conv2D, 1x1, stride 1, no dilation or groups, float32, with its own
    float kernel, whose input map is known and larger than 1x1 (squeeze-and-excitation's 1x1
    convolutions of a pooled [N, 1, 1, C] are a few microseconds: timing them would cost more
    than they could save)."""
    if type(layer) is not keras.layers.Conv2D or "convolution_op" in vars(layer) or not plain_weights(layer):
        return False
    if (layer.data_format != "channels_last" or tuple(layer.kernel_size) != (1, 1) or tuple(layer.strides) != (1, 1)
            or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1):
        return False
    shape = known_map(layer)
    return float32_layer(layer) and shape is not None and shape[0] * shape[1] > 1


def pointwise_convolution(inputs, kernel):
    """The 1x1 convolution of channels-last `inputs` [..., C] by `kernel` [1, 1, C, F] as one
    matrix product (see the module's docstring); [..., F]."""
    channels, filters = kernel.shape[2], kernel.shape[3]
    rows = tf.reshape(inputs, [-1, channels])
    outputs = tf.matmul(rows, tf.reshape(kernel, [channels, filters]))
    return tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [filters]], axis=0))


def pointwise_convolution_op(layer):
    """A `convolution_op` for candidate `layer` computing by one matrix product."""

    def convolution_op(inputs, kernel):
        return pointwise_convolution(inputs, kernel)

    convolution_op.kernel = "matmul"  # which one, for messages and tests
    return convolution_op


def separable_candidate(layer) -> bool:
    """A stock channels-last SeparableConv2D, no dilation, equal strides, SAME or VALID, float32,
    whose input map is known and whose output map is larger than 1x1, not yet switched."""
    if type(layer) is not keras.layers.SeparableConv2D or "call" in vars(layer):
        return False
    if (layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1)
            or layer.strides[0] != layer.strides[1] or layer.padding not in ("same", "valid")):
        return False
    output = known_map(layer, "output")
    return float32_layer(layer) and known_map(layer) is not None and output is not None and output[0] * output[1] > 1


def separable_call(layer):
    """The switched `call` of separable_candidate `layer`: TensorFlow's depthwise half, the 1x1 half
    as a matrix product, then Keras's bias and activation (see the module's docstring)."""
    strides, padding = [1, layer.strides[0], layer.strides[0], 1], layer.padding.upper()

    def call(inputs):
        depthwise = tf.nn.depthwise_conv2d(tf.convert_to_tensor(inputs), layer.depthwise_kernel, strides, padding)
        convolved = pointwise_convolution(depthwise, tf.convert_to_tensor(layer.pointwise_kernel))
        return bias_and_activation(layer, convolved)

    call.kernel = "matmul"  # which one, for messages and tests
    return call
