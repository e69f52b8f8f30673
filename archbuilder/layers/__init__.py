"""The primitive layer types: each defined once (schema, static rule, Keras construction) in the
modules here, and registered by being listed in `PRIMITIVES`. Imports no TensorFlow.

Adding a primitive: write its class (see `base.Primitive`) in the module of its family, list it
below, and add one row to tests/test_primitives.py, which checks its static rule against Keras.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from archbuilder.layers.activation import Activation, ActivationLayer, DropoutLayer, DropPathLayer
from archbuilder.layers.base import (
    Context, FieldError, LayerStats, Primitive, Shape, ShapeError, format_shape, pair,
)
from archbuilder.layers.conv import ConvLayer, DenseLayer, DepthwiseConvLayer
from archbuilder.layers.merge import AddLayer, ConcatLayer, MultiplyLayer
from archbuilder.layers.norm import BatchNormLayer, LayerNormLayer, LayerScaleLayer, NormalizationLayer, RescalingLayer
from archbuilder.layers.pool import (
    AveragePoolLayer, FlattenLayer, GlobalAveragePoolLayer, GlobalMaxPoolLayer, MaxPoolLayer, ReshapeLayer,
    ZeroPaddingLayer,
)

PRIMITIVES: tuple[type[Primitive], ...] = (
    ZeroPaddingLayer, ConvLayer, DepthwiseConvLayer, DenseLayer, BatchNormLayer, LayerNormLayer, ActivationLayer,
    DropoutLayer, DropPathLayer, MaxPoolLayer, AveragePoolLayer, GlobalAveragePoolLayer, GlobalMaxPoolLayer,
    FlattenLayer, ReshapeLayer, AddLayer, ConcatLayer, MultiplyLayer, LayerScaleLayer, RescalingLayer,
    NormalizationLayer,
)
BY_TYPE: dict[str, type[Primitive]] = {cls.model_fields["type"].annotation.__args__[0]: cls for cls in PRIMITIVES}
LAYER_TYPES: tuple[str, ...] = tuple(BY_TYPE)

Layer = Annotated[Union[PRIMITIVES], Field(discriminator="type")]

__all__ = [
    "PRIMITIVES", "BY_TYPE", "LAYER_TYPES", "Layer", "Primitive", "Context", "LayerStats", "Shape",
    "ShapeError", "FieldError", "format_shape", "pair", "Activation", *(cls.__name__ for cls in PRIMITIVES),
]
