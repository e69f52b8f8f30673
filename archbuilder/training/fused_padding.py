"""A ZeroPadding2D that pads exactly as SAME would for the convolution after it, folded into that
convolution in training: one convolution with SAME padding in place of a padded copy of the
tensor, a VALID convolution over the copy and, backward, an input gradient over the padded map
that a Slice then cuts back.

TensorFlow's SAME pads a map for ceil(size / stride) outputs, an odd row or column after it
(depthwise_gradient.py `explicit_padding`). Two kinds of files pad by hand where that is the
same padding:
- PyTorch pads both sides of a map alike, which for stride 2 is not SAME's; so files written after
  PyTorch networks pad with a ZeroPadding2D and convolve VALID (the zoo's bottleneck_v15 blocks:
  SE-ResNet-50, ResNet-50D, ResNeXt-50, Wide ResNet-50-2; keras.applications' ResNet v2 and
  stems). For stride 1 and an odd kernel the two are the same: d (k - 1) / 2 zeros on each side
  (d the dilation). On the AVX-512 Zen 5 at batch 32 a 3x3 layer's forward pass and both
  gradients took 0.85-0.99x the padded way's time (7x7x512 the least), and training steps ran
  1.05-1.08x faster for SE-ResNet-50, 1.05x for ResNeXt-50 and Wide ResNet-50-2, 1.02x for
  ResNet-50D (bench/folded_padding.py; bench/RESULTS.md, eleventh session). Their strided
  convolutions keep their padding layer: TensorFlow's EXPLICIT padding would express it, but its
  gradients are left to TensorFlow's own kernels there, 1.05-1.2x slower.
- keras.applications' EfficientNet and MobileNetV2 (and the zoo's files after them) pad before a
  stride-2 convolution with `correct_pad`, ((k//2 - 1 + h % 2, k//2), ...): SAME's padding for
  every map size. Folding their stems and stride-2 depthwise layers ran training steps 1.02-1.055x
  faster for EfficientNet-B0, 1.00-1.07x for -B1 (three runs each) and 1.03-1.04x for
  MobileNetV2 (two; bench/folded_padding.py; bench/RESULTS.md, thirteenth session).

The padded zeros only ever added exact zeros; oneDNN sums the remaining products in its own
order for each map size, so outputs and gradients are the same sums within float32 rounding
(tests/test_fused_padding.py bounds them against the exact float64 sums).

Only where the padding layer's one output feeds only that convolution, both stock float32
channels-last layers called once, the padding exactly SAME's for the known map. `train` folds
after its timed switches: a grouped convolution (grouped_conv.py's kernels: ResNeXt-50's) gets the
same kernel computing SAME, a depthwise one with TensorFlow's own kernel gradient
(depthwise_gradient.py) that call computing SAME; one with any other kernel of its own
(Winograd's) keeps its padding layer, and so does a grouped convolution left on Keras's
XLA-compiled op. The switch is made on the two *instances*: the padding's `call` returns its input
unchanged, the convolution's `convolution_op` (a depthwise layer's `call`) convolves SAME; model
files are those of stock layers, and a model loaded for --resume is switched again.
"""

from __future__ import annotations

import keras

from archbuilder.training.depthwise_gradient import KERNEL as DEPTHWISE_GRADIENT_KERNEL, depthwise_call, explicit_padding
from archbuilder.training.fused_conv_bias import bias_and_activation
from archbuilder.training.grouped_conv import KERNELS as GROUPED_KERNELS, grouped_convolution_op
from archbuilder.training.instance_switch import float32_layer, gpu_present, known_map, plain_weights, sole_consumer

# The switched kernels that compute SAME as well (grouped_conv.py's; Winograd's F(2x2, 3x3) takes
# the padded map as it comes: folded into its transform it timed the same, 0.997-1.015x a layer).
REFOLDED = GROUPED_KERNELS


def folding_convolution(padding_layer):
    """The convolution `padding_layer` can fold into (see the module's docstring), or None."""
    if type(padding_layer) is not keras.layers.ZeroPadding2D or "call" in vars(padding_layer):
        return None
    convolution = sole_consumer(padding_layer)
    if type(convolution) is keras.layers.Conv2D:
        own = vars(convolution).get("convolution_op")  # a switched kernel's, or None: Keras's
        if (own is None and convolution.groups != 1) or (own is not None and getattr(own, "kernel", None) not in REFOLDED):
            return None
    elif type(convolution) is keras.layers.DepthwiseConv2D:
        own = vars(convolution).get("call")  # depthwise_gradient.py's, or None: Keras's
        # The folded call reads the layer's kernel itself: not past a LoRA adapter or a quantized one.
        if not plain_weights(convolution) or (own is not None
                                               and getattr(own, "kernel", None) != DEPTHWISE_GRADIENT_KERNEL):
            return None
    else:
        return None
    if len(convolution._inbound_nodes) != 1:  # called once: on the padding's output alone
        return None
    input_map = known_map(padding_layer)
    if (input_map is None or padding_layer.data_format != "channels_last" or convolution.data_format != "channels_last"
            or convolution.padding != "valid" or not (float32_layer(padding_layer) and float32_layer(convolution))):
        return None
    same = tuple(explicit_padding(size, (kernel - 1) * dilation + 1, stride, "same") for size, kernel, dilation, stride
                 in zip(input_map[:2], convolution.kernel_size, convolution.dilation_rate, convolution.strides))
    return convolution if tuple(map(tuple, padding_layer.padding)) == same else None


def use_folded_padding(model) -> list[str]:
    """Fold every padding layer of `model` that can be into its convolution (see the module's
    docstring); the names of those convolutions. Nothing where TensorFlow sees a GPU."""
    if gpu_present():
        return []
    folded = []
    for layer in model._flatten_layers(include_self=False):
        convolution = folding_convolution(layer)
        if convolution is None:
            continue
        if type(convolution) is keras.layers.DepthwiseConv2D:
            convolution.call = _same_padding_depthwise_call(convolution, known_map(layer)[:2])
        else:
            convolution.convolution_op = _same_padding_op(convolution)
        layer.call = _unpadded
        folded.append(convolution.name)
    return folded


def _unpadded(inputs):
    return inputs


def _same_padding_op(layer):
    """`layer`'s convolution with SAME padding: its grouped kernel's, or Keras's own
    (Conv.convolution_op)."""
    switched = getattr(vars(layer).get("convolution_op"), "kernel", None)
    if switched is not None:
        return grouped_convolution_op(layer, switched, "same")

    def convolution_op(inputs, kernel):
        return keras.ops.conv(inputs, kernel, strides=layer.strides, padding="same", dilation_rate=layer.dilation_rate,
                              data_format="channels_last")

    convolution_op.kernel = "same"  # which one, for messages and tests
    return convolution_op


def _same_padding_depthwise_call(layer, input_map):
    """Depthwise `layer`'s call with SAME padding over an input of `input_map` (height, width):
    depthwise_gradient.py's where it has that call, or Keras's own (DepthwiseConv2D.call)."""
    if "call" in vars(layer):
        return depthwise_call(layer, "same", input_map)

    def call(inputs):
        convolved = keras.ops.depthwise_conv(inputs, layer.kernel, strides=layer.strides, padding="same",
                                             dilation_rate=layer.dilation_rate, data_format="channels_last")
        return bias_and_activation(layer, convolved)

    call.kernel = "same"  # which one, for messages and tests
    return call
