"""Layers that change the spatial layout: pools, global pools, zero padding, cropping, upsampling,
resizing, flatten, reshape."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field

from archbuilder.layers.base import (
    LayerStats, NonNegInt, Padding, Primitive, ShapeError, Size2D, expr, format_shape, image, pair, single, spatial,
)


class _Pool(Primitive):
    pool: Size2D = 2
    stride: Size2D | None = None  # None: the pool size, as in Keras
    padding: Padding = "valid"

    def describe(self) -> str:
        ph, pw = pair(self.pool)
        return f"{self.type} {ph}x{pw}" + (f" '{self.name}'" if isinstance(self.name, str) else "")

    def infer(self, inputs, ctx):
        shape = image(self, inputs)
        oh, ow = spatial(self, shape, self.pool, self.stride if self.stride is not None else self.pool, self.padding)
        return LayerStats((oh, ow, shape[2]))

    def _keras_args(self, name):
        stride = pair(self.stride) if self.stride is not None else None
        return dict(pool_size=pair(self.pool), strides=stride, padding=self.padding, name=name)


class MaxPoolLayer(_Pool):
    type: Literal["max_pool"]
    keras_base_name = "max_pooling2d"

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.MaxPooling2D(**self._keras_args(name))


class AveragePoolLayer(_Pool):
    type: Literal["average_pool"]
    keras_base_name = "average_pooling2d"

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.AveragePooling2D(**self._keras_args(name))


class _GlobalPool(Primitive):
    keepdims: bool = False

    def infer(self, inputs, ctx):
        channels = image(self, inputs)[2]
        return LayerStats((1, 1, channels) if self.keepdims else (channels,))


class GlobalAveragePoolLayer(_GlobalPool):
    type: Literal["global_average_pool"]
    keras_base_name = "global_average_pooling2d"

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.GlobalAveragePooling2D(keepdims=self.keepdims, name=name)


class GlobalMaxPoolLayer(_GlobalPool):
    type: Literal["global_max_pool"]
    keras_base_name = "global_max_pooling2d"

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.GlobalMaxPooling2D(keepdims=self.keepdims, name=name)


PadPair = Annotated[list[NonNegInt], Field(min_length=2, max_length=2)]
# Rows and columns on each side: n (all sides) | [h, w] (top and bottom, left and right) |
# [[top, bottom], [left, right]].
Sides = Union[NonNegInt, PadPair, Annotated[list[PadPair], Field(min_length=2, max_length=2)]]


def _sides(value) -> tuple[tuple[int, int], tuple[int, int]]:
    """A `Sides` value as ((top, bottom), (left, right))."""
    if isinstance(value, int):
        return (value, value), (value, value)
    if isinstance(value[0], int):
        return (value[0], value[0]), (value[1], value[1])
    return (value[0][0], value[0][1]), (value[1][0], value[1][1])


class ZeroPaddingLayer(Primitive):
    """padding: n (all sides) | [h, w] (top and bottom, left and right) | [[top, bottom], [left, right]]."""

    type: Literal["zero_padding"]
    padding: Sides = 1
    keras_base_name = "zero_padding2d"

    def sides(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return _sides(self.padding)

    def infer(self, inputs, ctx):
        h, w, c = image(self, inputs)
        (top, bottom), (left, right) = self.sides()
        return LayerStats((h + top + bottom, w + left + right, c))

    def keras(self, ctx, name, inputs):
        import keras

        (top, bottom), (left, right) = self.sides()
        padding = (top, left) if (top, left) == (bottom, right) else ((top, bottom), (left, right))
        return keras.layers.ZeroPadding2D(padding=padding, name=name)


class CroppingLayer(Primitive):
    """cropping: n (all sides) | [h, w] (top and bottom, left and right) | [[top, bottom], [left, right]]
    rows and columns removed (a valid-padding U-Net crops the encoder's maps to the decoder's).
    Without `cropping` and with two inputs, `from: [map, like]`, the map is cropped about its
    centre to like's height and width (an odd difference leaves the extra row at the bottom and
    the extra column at the right, as PyTorch U-Nets' `diff // 2, diff - diff // 2`). The Keras
    layer is a stock Cropping2D by the numbers that gives, called on the map alone."""

    type: Literal["cropping"]
    cropping: Sides = 1
    keras_base_name = "cropping2d"

    def sides(self, inputs) -> tuple[tuple[int, int], tuple[int, int]]:
        if len(inputs) == 1:
            return _sides(self.cropping)
        if len(inputs) != 2 or "cropping" in self.model_fields_set:
            raise ShapeError(f"cropping takes one input and `cropping` (pixels), or two inputs, `from: [map, like]`, "
                             f"and no `cropping` (the map cropped to like's size); got {len(inputs)} input(s)"
                             + (" and `cropping`" if "cropping" in self.model_fields_set else ""))
        (h, w, _), like = image(self, inputs[:1]), inputs[1]
        if len(like) != 3 or like[0] > h or like[1] > w:
            raise ShapeError(f"cropping cannot crop {format_shape(inputs[0])} to the size of {format_shape(like)}")
        dh, dw = h - like[0], w - like[1]
        return (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)

    def infer(self, inputs, ctx):
        (top, bottom), (left, right) = self.sides(inputs)
        h, w, c = shape = image(self, inputs[:1])
        oh, ow = h - top - bottom, w - left - right
        if oh < 1 or ow < 1:
            axis, size, cut = ("height", h, top + bottom) if oh < 1 else ("width", w, left + right)
            raise ShapeError(f"{self.describe()} removes {cut} of the {axis}'s {size} (input shape {shape})",
                             collapsed=True)
        return LayerStats((oh, ow, c))

    def keras_inputs(self, inputs):
        return inputs[:1]

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Cropping2D(cropping=self.sides(inputs), name=name)


class UpsampleLayer(Primitive):
    """Repeats rows and columns `size` times (`nearest`) or interpolates (`bilinear`)."""

    type: Literal["upsample"]
    size: Size2D = 2
    interpolation: Literal["nearest", "bilinear"] = "nearest"
    keras_base_name = "up_sampling2d"

    def infer(self, inputs, ctx):
        h, w, c = image(self, inputs)
        sh, sw = pair(self.size)
        return LayerStats((h * sh, w * sw, c))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.UpSampling2D(size=pair(self.size), interpolation=self.interpolation, name=name)


class ResizeLayer(Primitive):
    """Resizes feature maps to `size` ([height, width], or one number for both), `bilinear` (as
    DeepLab does) or `nearest`, without antialiasing: Keras's Resizing. Without `size` it takes two
    inputs, `from: [map, like]`, and resizes the first to the height and width of the second
    (DeepLabV3+'s upsampling to the low-level feature's size).

    The second input gives only its size, which is static here, so the Keras layer is a stock
    Resizing to that size called on the first input alone: a layer reading the second tensor's
    shape at run time would have to be our own class, which plain Keras could not load."""

    type: Literal["resize"]
    size: Size2D | None = None
    interpolation: Literal["bilinear", "nearest"] = "bilinear"
    keras_base_name = "resizing"

    def target(self, inputs) -> tuple[int, int]:
        if self.size is not None:
            if len(inputs) != 1:
                raise ShapeError(f"resize to a fixed size takes one input, got {len(inputs)}; to take another "
                                 "map's size, leave out `size` and give `from: [map, like]`")
            return pair(self.size)
        if len(inputs) != 2:
            raise ShapeError(f"resize without `size` takes two inputs, `from: [map, like]` (the map is resized to "
                             f"like's height and width), got {len(inputs)}")
        like = inputs[1]
        if len(like) != 3:
            raise ShapeError(f"resize takes its size from an image-shaped input (height, width, channels); "
                             f"received shape {like}")
        return like[0], like[1]

    def infer(self, inputs, ctx):
        size = self.target(inputs)
        channels = image(self, inputs[:1])[2]
        return LayerStats((*size, channels))

    def keras_inputs(self, inputs):
        return inputs[:1]

    def keras(self, ctx, name, inputs):
        import keras

        height, width = self.target(inputs)
        return keras.layers.Resizing(height, width, interpolation=self.interpolation, name=name)


class FlattenLayer(Primitive):
    type: Literal["flatten"]
    keras_base_name = "flatten"

    def infer(self, inputs, ctx):
        return LayerStats((math.prod(single(self, inputs)),))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Flatten(name=name)


Dim = expr(Annotated[int, Field(ge=-1, le=2**53)])


class ReshapeLayer(Primitive):
    """A new shape (batch axis excluded) with the same number of values; one entry may be -1."""

    type: Literal["reshape"]
    shape: Annotated[list[Dim], Field(min_length=1, max_length=4)]
    keras_base_name = "reshape"

    def infer(self, inputs, ctx):
        shape = single(self, inputs)
        size = math.prod(shape)
        target = list(self.shape)
        if target.count(-1) > 1 or 0 in target:
            raise ShapeError(f"reshape: at most one -1 and no 0 in {target}")
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if size % known:
                raise ShapeError(f"reshape cannot fit {size} values into {target}")
            target[target.index(-1)] = size // known
        if math.prod(target) != size:
            raise ShapeError(f"reshape cannot turn shape {shape} ({size} values) into {target}")
        return LayerStats(tuple(target))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Reshape(tuple(self.shape), name=name)
