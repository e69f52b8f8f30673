"""Layers that change the spatial layout: pools, global pools, zero padding, flatten, reshape."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field

from archbuilder.layers.base import (
    LayerStats, NonNegInt, Padding, Primitive, ShapeError, Size2D, expr, image, pair, single, spatial,
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


class ZeroPaddingLayer(Primitive):
    """padding: n (all sides) | [h, w] (top and bottom, left and right) | [[top, bottom], [left, right]]."""

    type: Literal["zero_padding"]
    padding: Union[NonNegInt, PadPair, Annotated[list[PadPair], Field(min_length=2, max_length=2)]] = 1
    keras_base_name = "zero_padding2d"

    def sides(self) -> tuple[tuple[int, int], tuple[int, int]]:
        p = self.padding
        if isinstance(p, int):
            return (p, p), (p, p)
        if isinstance(p[0], int):
            return (p[0], p[0]), (p[1], p[1])
        return (p[0][0], p[0][1]), (p[1][0], p[1][1])

    def infer(self, inputs, ctx):
        h, w, c = image(self, inputs)
        (top, bottom), (left, right) = self.sides()
        return LayerStats((h + top + bottom, w + left + right, c))

    def keras(self, ctx, name, inputs):
        import keras

        (top, bottom), (left, right) = self.sides()
        padding = (top, left) if (top, left) == (bottom, right) else ((top, bottom), (left, right))
        return keras.layers.ZeroPadding2D(padding=padding, name=name)


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
