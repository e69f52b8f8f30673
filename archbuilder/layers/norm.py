"""Normalizing and scaling layers: batch_norm, layer_norm, layer_scale, rescaling, normalization."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from archbuilder.layers.base import Epsilon, LayerStats, Primitive, ShapeError, expr, single

Momentum = expr(Annotated[float, Field(ge=0, lt=1)])
Real = expr(Annotated[float, Field(ge=-1e12, le=1e12)])


class BatchNormLayer(Primitive):
    type: Literal["batch_norm"]
    axis: Literal[-1, 3] | None = None  # None: defaults.batch_norm
    epsilon: Epsilon | None = None
    momentum: Momentum | None = None
    center: bool = True
    scale: bool = True
    keras_base_name = "batch_normalization"

    def infer(self, inputs, ctx):
        shape = single(self, inputs)
        axis = ctx.batch_norm_axis if self.axis is None else self.axis
        if axis == 3 and len(shape) != 3:
            setting = "axis: 3" if self.axis is not None else "defaults.batch_norm.axis: 3"
            raise ShapeError(
                f"batch_norm with {setting} needs an image-shaped input (height, width, channels); "
                f"received shape {shape}; use axis: -1")
        channels = shape[-1]
        # gamma and beta train; the moving mean and variance do not.
        return LayerStats(shape, trainable=channels * (int(self.center) + int(self.scale)), non_trainable=2 * channels)

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.BatchNormalization(
            axis=ctx.batch_norm_axis if self.axis is None else self.axis,
            epsilon=ctx.batch_norm_epsilon if self.epsilon is None else self.epsilon,
            momentum=ctx.batch_norm_momentum if self.momentum is None else self.momentum,
            center=self.center, scale=self.scale, synchronized=ctx.batch_norm_synchronized, name=name,
        )


class LayerNormLayer(Primitive):
    """Normalizes over the last axis (channels), as ConvNeXt does."""

    type: Literal["layer_norm"]
    epsilon: Epsilon = 1e-3
    keras_base_name = "layer_normalization"

    def infer(self, inputs, ctx):
        shape = single(self, inputs)
        return LayerStats(shape, trainable=2 * shape[-1])

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.LayerNormalization(axis=-1, epsilon=self.epsilon, name=name)


class LayerScaleLayer(Primitive):
    """A learnable per-channel scale, initialized to `init` (ConvNeXt's LayerScale)."""

    type: Literal["layer_scale"]
    init: Real = 1e-6
    keras_base_name = "layer_scale"

    def infer(self, inputs, ctx):
        shape = single(self, inputs)
        return LayerStats(shape, trainable=shape[-1])

    def keras(self, ctx, name, inputs):
        # keras.applications' own LayerScale (ConvNeXt): a Keras class, so plain Keras loads the
        # files, and the same layer keras.applications.ConvNeXt* carries, weight for weight.
        from keras.src.applications.convnext import LayerScale

        return LayerScale(init_values=self.init, projection_dim=single(self, inputs)[-1], name=name)


class RescalingLayer(Primitive):
    """x * scale + offset, e.g. scale: "1 / 255"."""

    type: Literal["rescaling"]
    scale: Real = 1.0
    offset: Real = 0.0
    keras_base_name = "rescaling"

    def infer(self, inputs, ctx):
        return LayerStats(single(self, inputs))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Rescaling(scale=self.scale, offset=self.offset, name=name)


Floats = Union[Real, Annotated[list[Real], Field(min_length=1, max_length=4096)]]


class NormalizationLayer(Primitive):
    """(x - mean) / sqrt(variance) per channel, as keras.layers.Normalization.

    With mean and variance given they are constants (no weights); without, the layer holds them as
    non-trainable weights of shape (C,) and (C,) plus a count scalar, as keras EfficientNet's does
    (so weights saved from such a model load into it)."""

    type: Literal["normalization"]
    mean: Floats | None = None
    variance: Floats | None = None
    keras_base_name = "normalization"

    def infer(self, inputs, ctx):
        shape = single(self, inputs)
        channels = shape[-1]
        if (self.mean is None) != (self.variance is None):
            raise ShapeError("normalization needs both mean and variance, or neither")
        for label, values in (("mean", self.mean), ("variance", self.variance)):
            if isinstance(values, list) and len(values) not in (1, channels):
                raise ShapeError(f"normalization {label} has {len(values)} values for {channels} channels")
        if isinstance(self.variance, list) and any(v < 0 for v in self.variance) or \
                isinstance(self.variance, (int, float)) and self.variance < 0:
            raise ShapeError("normalization variance must be ≥ 0")
        if self.mean is None:
            return LayerStats(shape, non_trainable=2 * channels + 1)
        return LayerStats(shape)

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Normalization(axis=-1, mean=self.mean, variance=self.variance, name=name)
