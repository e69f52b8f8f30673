"""The primitive layer types: each defined once (schema, static rule, Keras construction) in the
modules here. Imports no TensorFlow.

Adding a primitive: write its class (see `base.Primitive`) in the module of its family and add one
row to tests/test_primitives.py, which checks its static rule against Keras. Defining the class
registers it: `PRIMITIVES`, the spec language, the fuzzers' layers and the JSON Schema follow
(regenerate schema/archbuilder.schema.json with `python -m archbuilder.plan.json_schema --write`;
a test names that command when the file is stale). A new family is a new module imported below.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

# Importing each family defines (and so registers) its primitives; the order here is the order of
# `LAYER_TYPES` in messages and of the layer types in the JSON Schema.
from archbuilder.layers import conv, norm, activation, pool, merge, tokens  # noqa: F401
from archbuilder.layers.activation import Activation
from archbuilder.layers.base import (
    Context, FieldError, LayerStats, Primitive, Shape, ShapeError, format_shape, pair, registered,
)
from archbuilder.layers.conv import DenseLayer

BY_TYPE: dict[str, type[Primitive]] = registered()
PRIMITIVES: tuple[type[Primitive], ...] = tuple(BY_TYPE.values())
LAYER_TYPES: tuple[str, ...] = tuple(BY_TYPE)

Layer = Annotated[Union[PRIMITIVES], Field(discriminator="type")]

__all__ = [
    "PRIMITIVES", "BY_TYPE", "LAYER_TYPES", "Layer", "Primitive", "Context", "LayerStats", "Shape",
    "ShapeError", "FieldError", "format_shape", "pair", "Activation", "DenseLayer",
]
