"""Grouped convolutions in training on CPU without XLA: the same math, kernels TensorFlow runs fast.

Keras's TensorFlow backend runs every grouped convolution (`Conv2D(groups > 1)`: ConvNeXt's 7x7
depthwise convolution has groups = channels, ResNeXt's 3x3 convolutions 32 groups) inside a
function compiled by XLA, because TensorFlow's own CPU Conv2D kernel refuses grouped filters
(keras/src/backend/tensorflow/nn.py `conv`: `needs_xla = ... channels != kernel.shape[-2]`).
XLA's CPU convolution and its gradients are slow for these shapes, and each such layer is compiled
before the first step (bench/grouped_conv.py, bench/RESULTS.md). Here the same convolution is
written with ops TensorFlow's CPU kernels (oneDNN) run directly; each is an exact rewrite, only
the order of the float32 sums differs (tests/test_grouped_conv.py bounds the difference):

  depthwise      groups = input channels: `tf.nn.depthwise_conv2d`, the op of Keras's own
                 DepthwiseConv2D (MobileNetV2, EfficientNet), with the kernel reshaped
                 (kh, kw, 1, C*m) -> (kh, kw, C, m): output channel c*m + j is group c's j-th.
  depthwise_sum  any groups: a depthwise convolution with multiplier F/G (every input channel
                 times the kernels of its group's outputs), then the sum over each group's C/G
                 input channels. The same multiply-adds as the grouped convolution, one extra
                 tensor C/G times the output's size (not kept for the backward pass).
  split          any groups: one plain convolution per group on its slice of channels, then
                 concatenated (G convolutions in the graph).
  native         TensorFlow's Conv2D op given the grouped filter directly: runs where the CPU
                 kernel accepts it (with oneDNN on, some TensorFlow builds do); else it fails at
                 its first call and is not chosen.

For groups = channels `depthwise` is used without timing (it is what Keras itself runs for a
depthwise layer). For other grouped convolutions the fastest of `depthwise_sum`, `split` and
`native` is timed once per shape and machine, and cached (grouped_choice.py).

As in cpu_kernels.py, the switch is made on layer *instances* (their own `convolution_op`), never
on the class: the model keeps stock `keras.layers.Conv2D` layers, its config and saved files are
those of the unswitched model, and a model loaded for --resume is switched again.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import SWITCHED_DTYPES, gpu_present

KERNELS = ("depthwise", "depthwise_sum", "split", "native")
TIMED = ("depthwise_sum", "split", "native")  # chosen among by timing, for groups < channels


def switchable(layer) -> bool:
    """A stock Keras Conv2D with groups > 1 that these kernels compute exactly: channels last, no
    dilation, equal strides (TensorFlow's depthwise kernel takes only those), float32 or bfloat16
    (`mixed_bfloat16`: the same products of the same bfloat16 values, summed in float32 by oneDNN
    and by Keras's XLA path alike; grouped_choice.py times each dtype apart), input channels known
    and not yet switched."""
    if not isinstance(layer, keras.layers.Conv2D) or type(layer).convolution_op is not keras.layers.Conv2D.convolution_op:
        return False
    if "convolution_op" in vars(layer) or layer.groups <= 1 or layer.data_format != "channels_last":
        return False
    if tuple(layer.dilation_rate) != (1, 1) or layer.strides[0] != layer.strides[1]:
        return False
    if layer.compute_dtype not in SWITCHED_DTYPES:
        return False
    try:
        channels = layer.input.shape[-1]
    except (AttributeError, ValueError):  # not yet called, or shared by several inputs
        return False
    return channels is not None and len(layer.input.shape) == 4


def is_depthwise(layer) -> bool:
    """Groups equal to the input channels: one group per channel."""
    return layer.groups == layer.input.shape[-1]


def grouped_convolution_op(layer, kernel: str, padding: str | None = None):
    """A `convolution_op` for grouped Conv2D `layer` computed with `kernel` (one of KERNELS), with
    the layer's padding or `padding` ('same' where fused_padding.py folded a padding layer in)."""
    groups = layer.groups
    strides = [1, *layer.strides, 1]
    padding = (padding or layer.padding).upper()  # Keras's 'same' / 'valid' are TensorFlow's SAME / VALID
    if kernel == "depthwise" and not is_depthwise(layer):
        raise ValueError(f"{layer.name}: depthwise needs groups ({groups}) = input channels")

    def depthwise_sum(inputs, weights):
        kh, kw, group_in, filters = weights.shape
        group_out = filters // groups
        # (kh, kw, C/G, G*F/G) -> (kh, kw, G*C/G, F/G): input channel g*C/G + i gets the kernels
        # of group g's outputs, so depthwise output channel (g*C/G + i)*F/G + j is term i of
        # output g*F/G + j.
        spread = tf.reshape(weights, [kh, kw, group_in, groups, group_out])
        if group_in > 1:
            spread = tf.transpose(spread, [0, 1, 3, 2, 4])
        spread = tf.reshape(spread, [kh, kw, groups * group_in, group_out])
        terms = tf.nn.depthwise_conv2d(inputs, spread, strides, padding)
        if group_in == 1:
            return terms
        shape = tf.shape(terms)
        terms = tf.reshape(terms, tf.concat([shape[:3], [groups, group_in, group_out]], 0))
        return tf.reshape(tf.reduce_sum(terms, axis=4), tf.concat([shape[:3], [filters]], 0))

    def split(inputs, weights):
        parts = zip(tf.split(inputs, groups, axis=-1), tf.split(weights, groups, axis=-1))
        return tf.concat([tf.nn.conv2d(x, w, strides, padding) for x, w in parts], axis=-1)

    def native(inputs, weights):
        return tf.nn.conv2d(inputs, weights, strides, padding)

    # `depthwise` is depthwise_sum's code with one input channel per group: nothing to sum.
    compute = {"depthwise": depthwise_sum, "depthwise_sum": depthwise_sum, "split": split, "native": native}[kernel]

    def convolution_op(inputs, weights):
        return compute(tf.convert_to_tensor(inputs), tf.convert_to_tensor(weights))

    convolution_op.kernel = kernel  # which one, for messages and tests
    return convolution_op


def switch_grouped_convolutions(model, kernels: dict[str, str]) -> list[str]:
    """Give each switchable grouped convolution of `model` named in `kernels` (layer name ->
    kernel) that kernel; returns the names switched. Nothing where TensorFlow sees a GPU (cuDNN
    runs grouped convolutions itself)."""
    if gpu_present():
        return []
    switched = []
    for layer in model._flatten_layers(include_self=False):
        if layer.name in kernels and switchable(layer):
            layer.convolution_op = grouped_convolution_op(layer, kernels[layer.name])
            switched.append(layer.name)
    return switched
