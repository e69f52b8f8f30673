"""The field types of spec values: numbers that may be written as expressions (`filters: "filters * 4"`),
sizes, rates, layer names and local ids. Shared by the primitive layers (archbuilder/layers) and
the block language (spec/blocks.py). Imports no TensorFlow.
"""

from __future__ import annotations

import typing
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, Iterator, Mapping, Union

from pydantic import Field, PlainSerializer, WrapValidator
from pydantic_core import PydanticCustomError

from archbuilder.spec import expressions
from archbuilder.spec.base import StrictModel

# ---------------------------------------------------------------------------------------------
# Field types: a number, or an expression evaluated when the layer is planned
# ---------------------------------------------------------------------------------------------


def _number_or_expression(value: Any, handler):
    if isinstance(value, str):
        try:
            expressions.parse(value)
        except expressions.ExpressionError as error:
            raise PydanticCustomError("spec", "{message}", {"message": str(error), "received": value}) from None
        return value
    return handler(value)


def expr(kind: Any) -> Any:
    """`kind` (a number type), or an expression string evaluated to a value of that type."""
    return Annotated[kind, WrapValidator(_number_or_expression, json_schema_input_type=Union[kind, str]),
                     PlainSerializer(lambda value: value, return_type=Any)]


def takes_expressions(annotation: Any) -> bool:
    """Whether a field's type (or a part of it: a list item, a union member) is made by `expr()`."""
    if isinstance(annotation, WrapValidator):
        return annotation.func is _number_or_expression
    if any(takes_expressions(m) for m in getattr(annotation, "__metadata__", ())):
        return True
    return any(takes_expressions(arg) for arg in typing.get_args(annotation))


# Literal sizes are not capped here: an absurd one is refused by the memory guard, with its estimate.
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PosInt = expr(PositiveInt)
NonNegInt = expr(NonNegativeInt)
# A size given once for both spatial axes, or as [height, width].
Size2D = Union[PosInt, Annotated[list[PosInt], Field(min_length=2, max_length=2)]]
Rate = expr(Annotated[float, Field(ge=0, lt=1)])
Epsilon = expr(Annotated[float, Field(gt=0, le=1)])
# A layer name, or a pattern whose {expression} parts are filled in per block: "res{stage}{letter}_branch2a".
LayerName = Annotated[str, Field(pattern=r"^(?:[A-Za-z0-9_.\-]|\{[^{}]{1,100}\})+$", max_length=128)]
LocalId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
# What `from:` and `outputs:` name: an id, or `STAGE.K`, block K (0 for the first) of the stage
# whose id is STAGE (a stage's own id names its last block's output).
TensorRef = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[0-9]{1,6})?$", max_length=71)]


def stage_block(ref: str) -> tuple[str, int] | None:
    """('c4', 2) for 'c4.2'; None for a plain id."""
    stage, dot, index = ref.partition(".")
    return (stage, int(index)) if dot else None


class NamePatterns(StrictModel):
    """A layer's name per naming scheme; a scheme left out leaves the layer unnamed there."""

    notebook: LayerName | None = None
    keras: LayerName | None = None


# ---------------------------------------------------------------------------------------------
# Block parameters as the values of string and boolean fields (`activation: act`)
# ---------------------------------------------------------------------------------------------

# The parameter declarations (as written, by name) of the block type whose body is being
# validated: a layer there may name one as the value of a string or boolean field. Set by the
# block type's model (plan/schema.py BlockDef) around the validation of its body.
_BLOCK_PARAMS: ContextVar[Mapping[str, Any]] = ContextVar("archbuilder_block_params", default={})


@contextmanager
def block_parameters(params: Any) -> Iterator[None]:
    token = _BLOCK_PARAMS.set(params if isinstance(params, dict) else {})
    try:
        yield
    finally:
        _BLOCK_PARAMS.reset(token)


def in_block_body() -> bool:
    return bool(_BLOCK_PARAMS.get())


def parameter_values(name: str) -> tuple[str, list | None] | None:
    """For parameter `name` of the block being validated: its type and the values it may take
    (a choice's `choices`, a bool's true and false; None for other types); None if no such parameter."""
    declared = _BLOCK_PARAMS.get().get(name)
    if not isinstance(declared, dict):
        return None
    kind = declared.get("type")
    choices = declared.get("choices")
    if kind == "choice" and isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices):
        return kind, list(choices)
    if kind == "bool":
        return kind, [True, False]
    return str(kind), None
