"""Layers that merge two or more inputs: add, concat (channels) and multiply (broadcasting)."""

from __future__ import annotations

from typing import Literal

from archbuilder.layers.base import LayerStats, Primitive, ShapeError, format_shape


def _shapes(layer, inputs) -> str:
    return " and ".join(format_shape(s) for s in inputs)


def _at_least_two(layer, inputs) -> None:
    if len(inputs) < 2:
        raise ShapeError(f"{layer.type} takes two or more inputs, got {len(inputs)}")


class AddLayer(Primitive):
    """Adds inputs of one shape (a residual connection)."""

    type: Literal["add"]
    keras_base_name = "add"
    merge = True

    def infer(self, inputs, ctx):
        _at_least_two(self, inputs)
        if any(shape != inputs[0] for shape in inputs[1:]):
            raise ShapeError("add needs inputs of one shape; received " + _shapes(self, inputs))
        return LayerStats(inputs[0])

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Add(name=name)


class ConcatLayer(Primitive):
    """Joins inputs along the channel (last) axis; the other axes must agree."""

    type: Literal["concat"]
    keras_base_name = "concatenate"
    merge = True

    def infer(self, inputs, ctx):
        _at_least_two(self, inputs)
        if any(len(s) != len(inputs[0]) or s[:-1] != inputs[0][:-1] for s in inputs[1:]):
            raise ShapeError("concat needs inputs that differ only in channels; received " + _shapes(self, inputs))
        return LayerStats(inputs[0][:-1] + (sum(s[-1] for s in inputs),))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Concatenate(axis=-1, name=name)


class MultiplyLayer(Primitive):
    """Multiplies inputs elementwise; an axis of size 1 broadcasts, so (1, 1, C) gates (H, W, C)
    (squeeze-excitation)."""

    type: Literal["multiply"]
    keras_base_name = "multiply"
    merge = True

    def infer(self, inputs, ctx):
        _at_least_two(self, inputs)
        rank = len(inputs[0])
        if any(len(s) != rank for s in inputs):
            raise ShapeError("multiply needs inputs of one rank; received " + _shapes(self, inputs))
        out = []
        for sizes in zip(*inputs):
            big = {d for d in sizes if d != 1}
            if len(big) > 1:
                raise ShapeError("multiply needs each axis equal or 1 (to broadcast); received " + _shapes(self, inputs))
            out.append(big.pop() if big else 1)
        return LayerStats(tuple(out))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Multiply(name=name)
