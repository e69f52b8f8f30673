"""Layers with kernels: conv (grouped, dilated), depthwise_conv, separable_conv, conv_transpose and dense."""

from __future__ import annotations

import math
from typing import Literal

from archbuilder.layers.base import (
    Context, LayerStats, Padding, PosInt, Primitive, ShapeError, Size2D, image, pair, single, spatial,
)
from archbuilder.spec.initializer import InitializerSpec


def _initializer(layer, ctx: Context):
    """The layer's kernel initializer: its own, else the spec's default, made by the Keras stage's
    factory (`ctx.make_initializer`); with neither, Keras's default."""
    spec = layer.kernel_initializer or ctx.kernel_initializer
    if spec is None:
        return "glorot_uniform"
    if ctx.make_initializer is None:
        raise ValueError("Context.make_initializer is needed to build a layer with a kernel initializer")
    return ctx.make_initializer(spec)


def _describe_kernel(layer) -> str:
    """`conv 7x7/2 'conv1'`: type, kernel, stride (if not 1) and name."""
    kh, kw = pair(layer.kernel)
    sh, _ = pair(layer.stride)
    text = f"{layer.type} {kh}x{kw}" + (f"/{sh}" if sh != 1 else "")
    return text + (f" '{layer.name}'" if isinstance(layer.name, str) else "")


def _no_strided_dilation(layer) -> None:
    # Keras refuses strides > 1 together with dilation > 1; say so before building.
    if max(pair(layer.stride)) > 1 and max(pair(layer.dilation)) > 1:
        raise ShapeError(f"{layer.describe()}: stride > 1 cannot be combined with dilation > 1 (Keras does not support it)")


class ConvLayer(Primitive):
    """2-D convolution; `groups` splits channels into groups (ResNeXt), `dilation` spaces the kernel."""

    type: Literal["conv"]
    filters: PosInt
    kernel: Size2D = 3
    stride: Size2D = 1
    padding: Padding = "valid"
    dilation: Size2D = 1
    groups: PosInt = 1
    use_bias: bool | None = None  # None: the spec's defaults.use_bias
    kernel_initializer: InitializerSpec | None = None  # None: defaults.kernel_initializer
    keras_base_name = "conv2d"

    def describe(self) -> str:
        return _describe_kernel(self)

    def infer(self, inputs, ctx):
        shape = image(self, inputs)
        _no_strided_dilation(self)
        cin, cout, groups = shape[2], self.filters, self.groups
        if cin % groups or cout % groups:
            raise ShapeError(f"{self.describe()}: groups {groups} must divide the input channels ({cin}) and filters ({cout})")
        oh, ow = spatial(self, shape, self.kernel, self.stride, self.padding, self.dilation)
        kh, kw = pair(self.kernel)
        use_bias = ctx.use_bias if self.use_bias is None else self.use_bias
        weights = kh * kw * (cin // groups) * cout
        return LayerStats((oh, ow, cout), trainable=weights + (cout if use_bias else 0), macs=oh * ow * weights)

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Conv2D(
            filters=self.filters, kernel_size=pair(self.kernel), strides=pair(self.stride), padding=self.padding,
            dilation_rate=pair(self.dilation), groups=self.groups,
            use_bias=ctx.use_bias if self.use_bias is None else self.use_bias,
            kernel_initializer=_initializer(self, ctx), name=name,
        )


class DepthwiseConvLayer(Primitive):
    """One kernel per input channel (times `depth_multiplier`); MobileNet's and EfficientNet's."""

    type: Literal["depthwise_conv"]
    kernel: Size2D = 3
    stride: Size2D = 1
    padding: Padding = "valid"
    depth_multiplier: PosInt = 1
    dilation: Size2D = 1
    use_bias: bool | None = None
    kernel_initializer: InitializerSpec | None = None
    keras_base_name = "depthwise_conv2d"

    def infer(self, inputs, ctx):
        shape = image(self, inputs)
        _no_strided_dilation(self)
        oh, ow = spatial(self, shape, self.kernel, self.stride, self.padding, self.dilation)
        kh, kw = pair(self.kernel)
        cout = shape[2] * self.depth_multiplier
        use_bias = ctx.use_bias if self.use_bias is None else self.use_bias
        weights = kh * kw * cout
        return LayerStats((oh, ow, cout), trainable=weights + (cout if use_bias else 0), macs=oh * ow * weights)

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.DepthwiseConv2D(
            kernel_size=pair(self.kernel), strides=pair(self.stride), padding=self.padding,
            depth_multiplier=self.depth_multiplier, dilation_rate=pair(self.dilation),
            use_bias=ctx.use_bias if self.use_bias is None else self.use_bias,
            depthwise_initializer=_initializer(self, ctx), name=name,
        )



class SeparableConvLayer(Primitive):
    """A depthwise convolution (`depth_multiplier` kernels per input channel) then a 1x1
    convolution to `filters`, as one layer: Keras's SeparableConv2D, which Xception's files store
    as one layer (so its weights map by structure). `use_bias`: the pointwise convolution's."""

    type: Literal["separable_conv"]
    filters: PosInt
    kernel: Size2D = 3
    stride: Size2D = 1
    padding: Padding = "valid"
    depth_multiplier: PosInt = 1
    dilation: Size2D = 1
    use_bias: bool | None = None  # None: the spec's defaults.use_bias
    kernel_initializer: InitializerSpec | None = None  # both kernels'; None: defaults.kernel_initializer
    keras_base_name = "separable_conv2d"

    def infer(self, inputs, ctx):
        shape = image(self, inputs)
        _no_strided_dilation(self)
        oh, ow = spatial(self, shape, self.kernel, self.stride, self.padding, self.dilation)
        kh, kw = pair(self.kernel)
        middle = shape[2] * self.depth_multiplier
        depthwise, pointwise = kh * kw * middle, middle * self.filters
        use_bias = ctx.use_bias if self.use_bias is None else self.use_bias
        return LayerStats((oh, ow, self.filters), trainable=depthwise + pointwise + (self.filters if use_bias else 0),
                          macs=oh * ow * (depthwise + pointwise))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.SeparableConv2D(
            filters=self.filters, kernel_size=pair(self.kernel), strides=pair(self.stride), padding=self.padding,
            depth_multiplier=self.depth_multiplier, dilation_rate=pair(self.dilation),
            use_bias=ctx.use_bias if self.use_bias is None else self.use_bias,
            depthwise_initializer=_initializer(self, ctx), pointwise_initializer=_initializer(self, ctx), name=name,
        )


class ConvTransposeLayer(Primitive):
    """A transposed convolution (U-Net's up-convolution): each input pixel spreads a kernel over
    the output, `stride` apart. Output size as Keras computes it: `valid`: in * stride +
    max(kernel - stride, 0); `same`: in * stride."""

    type: Literal["conv_transpose"]
    filters: PosInt
    kernel: Size2D = 2
    stride: Size2D = 2
    padding: Padding = "valid"
    use_bias: bool | None = None
    kernel_initializer: InitializerSpec | None = None
    keras_base_name = "conv2d_transpose"

    def describe(self) -> str:
        return _describe_kernel(self)

    def infer(self, inputs, ctx):
        h, w, cin = image(self, inputs)
        (kh, kw), (sh, sw) = pair(self.kernel), pair(self.stride)
        grow = self.padding == "valid"
        oh, ow = h * sh + (max(kh - sh, 0) if grow else 0), w * sw + (max(kw - sw, 0) if grow else 0)
        weights = kh * kw * cin * self.filters
        use_bias = ctx.use_bias if self.use_bias is None else self.use_bias
        return LayerStats((oh, ow, self.filters), trainable=weights + (self.filters if use_bias else 0),
                          macs=h * w * weights)

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Conv2DTranspose(
            filters=self.filters, kernel_size=pair(self.kernel), strides=pair(self.stride), padding=self.padding,
            use_bias=ctx.use_bias if self.use_bias is None else self.use_bias,
            kernel_initializer=_initializer(self, ctx), name=name,
        )


class DenseLayer(Primitive):
    """Fully connected on the last axis (of any rank, as Keras's Dense)."""

    type: Literal["dense"]
    # `classes` is the spec's top-level `classes`, so one `--set classes=10` resizes the head.
    units: PosInt = "classes"
    activation: "Activation" = "linear"
    use_bias: bool = True
    kernel_initializer: InitializerSpec | None = None
    keras_base_name = "dense"

    def infer(self, inputs, ctx):
        shape = single(self, inputs)
        positions = math.prod(shape[:-1])
        weights = shape[-1] * self.units
        return LayerStats(shape[:-1] + (self.units,), trainable=weights + (self.units if self.use_bias else 0),
                          macs=positions * weights)

    def keras(self, ctx, name, inputs):
        import keras

        from archbuilder.layers.activation import float32_if_softmax, keras_activation

        return keras.layers.Dense(units=self.units, activation=keras_activation(self.activation),
                                  use_bias=self.use_bias, kernel_initializer=_initializer(self, ctx),
                                  dtype=float32_if_softmax(self.activation), name=name)


from archbuilder.layers.activation import Activation  # noqa: E402  (the activation names, for `dense`)

DenseLayer.model_rebuild()
