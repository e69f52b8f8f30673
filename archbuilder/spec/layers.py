"""Primitive layers: what stems, heads and blocks are made of. Imports no TensorFlow.

Each model here is one layer; `archbuilder.plan.shapes` gives its static output shape, parameter count
and MACs, and `archbuilder.keras.graph` turns it into a Keras layer. Both dispatch on `type`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from archbuilder.spec.base import StrictModel

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
# A size given once for both spatial axes, or as [height, width].
Size2D = Union[PositiveInt, Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]]
LayerName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-{}]+$", max_length=128)]
Activation = Literal["relu", "relu6", "sigmoid", "tanh", "softmax", "swish", "gelu", "elu", "selu", "linear"]


def pair(value: int | list[int] | None) -> tuple[int, int]:
    """A Size2D as (height, width)."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


class ZeroPaddingLayer(StrictModel):
    type: Literal["zero_padding"]
    padding: Union[NonNegativeInt, Annotated[list[NonNegativeInt], Field(min_length=2, max_length=2)]] = 1
    name: LayerName | None = None


class ConvLayer(StrictModel):
    type: Literal["conv"]
    filters: PositiveInt
    kernel: Size2D = 3
    stride: Size2D = 1
    padding: Literal["valid", "same"] = "valid"
    use_bias: bool | None = None  # None: the spec's defaults.use_bias
    name: LayerName | None = None


class BatchNormLayer(StrictModel):
    type: Literal["batch_norm"]
    epsilon: Annotated[float, Field(gt=0)] | None = None  # None: defaults.batch_norm
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    name: LayerName | None = None


class ActivationLayer(StrictModel):
    type: Literal["activation"]
    activation: Activation = "relu"
    name: LayerName | None = None


class MaxPoolLayer(StrictModel):
    type: Literal["max_pool"]
    pool: Size2D = 2
    stride: Size2D | None = None  # None: the pool size, as in Keras
    padding: Literal["valid", "same"] = "valid"
    name: LayerName | None = None


class AveragePoolLayer(StrictModel):
    type: Literal["average_pool"]
    pool: Size2D = 2
    stride: Size2D | None = None
    padding: Literal["valid", "same"] = "valid"
    name: LayerName | None = None


class GlobalAveragePoolLayer(StrictModel):
    type: Literal["global_average_pool"]
    name: LayerName | None = None


class FlattenLayer(StrictModel):
    type: Literal["flatten"]
    name: LayerName | None = None


class DenseLayer(StrictModel):
    type: Literal["dense"]
    # `classes` means the spec's top-level `classes`, so one `--set classes=10` resizes the head.
    units: Union[PositiveInt, Literal["classes"]] = "classes"
    activation: Activation = "linear"
    use_bias: bool = True
    name: LayerName | None = None


class AddLayer(StrictModel):
    """Adds its inputs; used inside blocks for the shortcut, not available in stem or head."""

    type: Literal["add"] = "add"
    name: LayerName | None = None


Layer = Annotated[
    Union[
        ZeroPaddingLayer, ConvLayer, BatchNormLayer, ActivationLayer, MaxPoolLayer, AveragePoolLayer,
        GlobalAveragePoolLayer, FlattenLayer, DenseLayer,
    ],
    Field(discriminator="type"),
]
LAYER_TYPES = ("zero_padding", "conv", "batch_norm", "activation", "max_pool", "average_pool",
               "global_average_pool", "flatten", "dense")
