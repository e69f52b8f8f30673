"""Layers that merge two or more inputs: add, concat (channels) and multiply (broadcasting)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

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
    """Joins inputs along one axis, the channels (last) by default; the other axes must agree.
    `axis` counts as Keras's does, the batch axis being 0: `axis: 1` joins a detector's per-level
    (anchors, classes) predictions into one list of anchors."""

    type: Literal["concat"]
    axis: Annotated[int, Field(ge=-4, le=4)] = -1
    keras_base_name = "concatenate"
    merge = True

    def infer(self, inputs, ctx):
        _at_least_two(self, inputs)
        rank = len(inputs[0])
        position = self.axis - 1 if self.axis > 0 else rank + self.axis  # in the shape without the batch axis
        if self.axis == 0 or not 0 <= position < rank:
            raise ShapeError(f"concat axis {self.axis} is not an axis of its {rank}-axis inputs "
                             f"(1 to {rank}, or -1 to -{rank}; 0 is the batch)")
        rest = lambda s: s[:position] + s[position + 1:]  # noqa: E731
        if any(len(s) != rank or rest(s) != rest(inputs[0]) for s in inputs[1:]):
            along = "channels" if position == rank - 1 else f"axis {self.axis}"
            raise ShapeError(f"concat needs inputs that differ only in {along}; received " + _shapes(self, inputs))
        joined = sum(s[position] for s in inputs)
        return LayerStats(inputs[0][:position] + (joined,) + inputs[0][position + 1:])

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Concatenate(axis=self.axis, name=name)


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
