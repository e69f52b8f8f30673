"""A DepthwiseConv2D's kernel gradient from TensorFlow's own CPU kernel instead of oneDNN's, for
the shapes where that measured faster on the running CPU (depthwise_choice.py).

With oneDNN on (runtime.py turns it on), TensorFlow's layout pass hands every
DepthwiseConv2dNativeBackpropFilter to oneDNN, whose depthwise backward-weights kernel is slow for
5x5 filters on the AVX-512 Zen 5: EfficientNet-B0's 28x28x240 5x5 layer took 13.6 ms at batch 32
there against 7.6 ms in TensorFlow's own (Eigen) kernel, 7x7x1152 5.6 against 2.8 ms; its 3x3
layers at 56x56 and 112x112 went the other way (5.7 against 7.3, 3.6 against 8.7 ms;
bench/RESULTS.md). The layout pass leaves a node with explicit padding to TensorFlow's kernel, so
here the kernel gradient is that op with the layer's SAME or VALID padding written out as explicit
pads (TensorFlow's SAME: the extra row or column at the bottom and right), the same sums. The
forward pass and the input gradient stay oneDNN's (Keras's `depthwise_conv` is
`tf.nn.depthwise_conv2d`): outputs and input gradients are Keras's bit for bit, the kernel
gradient the same sums in another order (tests/test_depthwise_gradient.py bounds it against the
exact sums). EfficientNet-B0's step ran 1.03x faster with its nine 5x5 layers switched.

The switch is made on layer *instances* (their own `call`), never on the class: model files are
those of stock layers, and a model loaded for --resume is switched again. Stock float32
`DepthwiseConv2D` layers with one kernel per channel, channels last, no dilation.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.fused_conv_bias import bias_and_activation
from archbuilder.training.instance_switch import float32_layer, known_map, plain_weights
from archbuilder.training.tape_gradient import record_gradient, untaped

KERNEL = "eigen"  # the switched call's name, for messages, tests and fused_padding.py


def candidate(layer) -> bool:
    """A stock channels-last DepthwiseConv2D, depth multiplier 1, no dilation, equal strides,
    SAME or VALID, float32, with its own float kernel and a known input map, not yet switched."""
    if type(layer) is not keras.layers.DepthwiseConv2D or "call" in vars(layer) or not plain_weights(layer):
        return False
    if (layer.data_format != "channels_last" or layer.depth_multiplier != 1 or tuple(layer.dilation_rate) != (1, 1)
            or layer.strides[0] != layer.strides[1] or layer.padding not in ("same", "valid")):
        return False
    return float32_layer(layer) and known_map(layer) is not None


def explicit_padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """(before, after) padding of one spatial axis: none for VALID; for SAME what TensorFlow pads,
    enough for ceil(size / stride) outputs, the odd one after."""
    if padding == "valid":
        return 0, 0
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def depthwise_call(layer, padding: str | None = None, input_map: tuple[int, int] | None = None):
    """The switched `call` of candidate `layer` (see the module's docstring), with the layer's
    padding or `padding` ('same' over an input of `input_map`, height and width, where
    fused_padding.py folded a padding layer in)."""
    height, width = input_map or layer.input.shape[1:3]
    padding = padding or layer.padding
    (kh, kw), stride = layer.kernel_size, layer.strides[0]
    top, bottom = explicit_padding(height, kh, stride, padding)
    left, right = explicit_padding(width, kw, stride, padding)
    strides, padding = [1, stride, stride, 1], padding.upper()

    def convolution(inputs, kernel):
        with untaped():
            outputs = tf.nn.depthwise_conv2d(inputs, kernel, strides, padding)

        def gradient(upstream):
            input_gradient = tf.nn.depthwise_conv2d_backprop_input(tf.shape(inputs), kernel, upstream, strides, padding)
            kernel_gradient = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                input=inputs, filter_sizes=tf.shape(kernel), out_backprop=upstream, strides=strides,
                padding="EXPLICIT", explicit_paddings=[0, 0, top, bottom, left, right, 0, 0])
            return [input_gradient, kernel_gradient]

        record_gradient("DepthwiseConv2dNative", [outputs], [inputs, kernel], gradient)
        return outputs

    def call(inputs):
        convolved = convolution(tf.convert_to_tensor(inputs), tf.convert_to_tensor(layer.kernel))
        return bias_and_activation(layer, convolved)

    call.kernel = KERNEL  # which one, for messages and tests
    return call
