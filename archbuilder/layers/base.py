"""What every primitive layer shares: the base class (which registers each primitive), the
static statistics a layer reports, and the context (spec defaults) a layer is planned and built in.

A primitive is one pydantic class holding, side by side:
- its schema (the fields; unknown keys are errors);
- `infer(inputs, ctx)`: its static output shape, parameter count and MACs, without TensorFlow;
- `keras(ctx, name, inputs)`: its Keras layer, given the input shapes `infer` saw; Keras is imported
  inside, so spec/ and plan/ stay TF-free. Only Keras's own classes are built, so that a saved
  model loads in plain Keras (a test saves every primitive and loads it where archbuilder is absent).
Numeric fields (made by `expr()`, archbuilder/spec/fields.py) may hold an expression string
(`filters: "filters * 4"`), checked for syntax when read; `concrete(namespace)` evaluates them and validates the results against the
same field types.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, ClassVar, Literal, Mapping, Optional, Union

from pydantic import Field, ValidationError, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from archbuilder.spec import expressions
from archbuilder.spec.base import StrictModel
from archbuilder.spec.fields import (  # noqa: F401  (the field types every primitive module uses)
    Epsilon, LayerName, LocalId, NamePatterns, TensorRef, NonNegativeInt, NonNegInt, PositiveInt, PosInt, Rate, Size2D, expr,
    in_block_body, parameter_values, takes_expressions,
)

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A layer cannot take its input. `collapsed` marks a spatial size that fell below 1."""

    def __init__(self, message: str, collapsed: bool = False):
        super().__init__(message)
        self.collapsed = collapsed


class FieldError(ValueError):
    """An expression field of a layer could not be evaluated or its value is out of bounds.

    `field` is the path inside the layer (e.g. ("kernel", 1)) so the caller can locate it."""

    def __init__(self, message: str, field: tuple):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LayerStats:
    out_shape: Shape
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0
    # Values per image the layer makes besides its output and keeps for the backward pass:
    # attention's projections and its heads x N x N scores, which for many tokens dwarf the output
    # (plan/size_guard.py counts them as activations).
    working: int = 0

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


@dataclass(frozen=True)
class Context:
    """The spec-wide settings a layer falls back on: `defaults:` and `classes`."""

    use_bias: bool = True
    classes: int | None = None
    batch_norm_axis: int = -1
    batch_norm_epsilon: float = 1e-3
    batch_norm_momentum: float = 0.99
    batch_norm_synchronized: bool = False  # under tf.distribute: statistics over all replicas
    kernel_initializer: Any = None  # an InitializerSpec; None: Keras's default
    # How a layer's Keras factory turns an InitializerSpec into a Keras initializer. The Keras stage
    # supplies it (archbuilder.keras.initializers.make_initializer, which owns the TF-1-exact draw),
    # so that layers/ never imports archbuilder.keras; planning needs none.
    make_initializer: Callable[[Any], Any] | None = None


def format_shape(shape: Shape, separator: str = "x") -> str:
    """(8, 8, 64) -> '8x8x64': the one way shapes are written in messages, tables and diagrams."""
    return separator.join(str(d) for d in shape)


def pair(value: int | list[int] | None) -> tuple[int, int]:
    """A Size2D as (height, width)."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


class Primitive(StrictModel):
    """The base of every primitive layer type. Subclasses set `type`, their fields and rules.

    A subclass whose `type` is one literal (`type: Literal["conv"]`) is a primitive: defining it
    registers it (`registered()`), which is all the spec language, the fuzzers and the JSON Schema
    need. Subclasses without a literal `type` (`_Pool`) are shared bases.

    `id`, `from` and `when` matter inside a block body (and in stem and head, which are bodies
    too): `id` names the layer for `from:`, `from` lists its inputs (default: the layer before),
    `when` is a condition; a layer whose condition is false is skipped (an identity).
    """

    type: str
    name: Union[LayerName, NamePatterns, None] = None
    id: LocalId | None = None
    from_: Union[TensorRef, Annotated[list[TensorRef], Field(min_length=1, max_length=64)], None] = Field(None, alias="from")
    when: Optional[expr(bool)] = None

    # Class-level facts, not fields.
    keras_base_name: ClassVar[str]  # Keras's automatic name for this layer class (`conv2d`)
    merge: ClassVar[bool] = False  # takes a list of inputs (add, concat, multiply)
    summary: ClassVar[str] = ""

    model_config = {**StrictModel.model_config, "populate_by_name": True}

    # -- the rules each primitive defines ------------------------------------------------------

    def infer(self, inputs: list[Shape], ctx: Context) -> LayerStats:  # pragma: no cover - abstract
        raise NotImplementedError

    def keras(self, ctx: Context, name: str, inputs: list[Shape]):  # pragma: no cover - abstract
        raise NotImplementedError

    def keras_inputs(self, inputs: list) -> list:
        """The inputs its Keras layer is called on: all of them, except for a layer that only
        reads another input's (static) shape, such as `resize` to another map's size."""
        return inputs

    # -- shared ----------------------------------------------------------------------------------

    def describe(self) -> str:
        """A short human description used in messages: `conv 7x7/2 'conv1'`."""
        return self.type + (f" '{self.name}'" if isinstance(self.name, str) else "")

    def has_expressions(self) -> bool:
        return any(_holds_expr(getattr(self, f)) for f in self._expression_fields())

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # The fields that may hold expressions, found once per class (expansion asks per layer).
        cls._expr_fields = tuple(n for n, f in cls.model_fields.items()
                                 if n != "when" and any(takes_expressions(m) for m in (f.annotation, *f.metadata)))
        tag = cls.type_name()
        if tag is not None:
            if tag in _REGISTRY:
                raise TypeError(f"two primitives are called '{tag}': {_REGISTRY[tag].__qualname__} and {cls.__qualname__}")
            _REGISTRY[tag] = cls

    @classmethod
    def type_name(cls) -> str | None:
        """The value of `type:` that selects this primitive; None for a shared base class."""
        annotation = cls.model_fields["type"].annotation
        if typing.get_origin(annotation) is Literal and len(typing.get_args(annotation)) == 1:
            return typing.get_args(annotation)[0]
        return None

    @classmethod
    def _expression_fields(cls) -> tuple[str, ...]:
        return cls._expr_fields

    @classmethod
    def choice_fields(cls) -> dict[str, tuple]:
        """The fields that take one of a few strings or true/false, with the values each takes (by
        the key written in a spec): those a block parameter may stand for."""
        found = _CHOICE_FIELDS.get(cls)
        if found is None:
            found = _CHOICE_FIELDS[cls] = {
                field.alias or name: values for name, field in cls.model_fields.items()
                if name not in ("type", "name", "id", "from_", "when") and (values := _choices_of(field.annotation))}
        return found

    @model_validator(mode="wrap")
    @classmethod
    def _block_parameters(cls, data: Any, handler):
        """In a block body, a string or boolean field may name a `choice` or `bool` parameter of the
        block (`activation: act`). The layer is checked with every value the parameter may take,
        as a literal would be, and keeps the name, which `concrete` replaces by the bound value."""
        if not isinstance(data, dict) or not in_block_body():
            return handler(data)
        refs, substituted = {}, dict(data)
        for key, allowed in cls.choice_fields().items():
            name = data.get(key)
            if not isinstance(name, str) or name in allowed:
                continue
            found = parameter_values(name)
            if found is None:
                continue  # no parameter: the field's own check says what is wrong
            kind, values = found
            shown = ", ".join(_literal(v) for v in allowed)
            if values is None:
                raise PydanticCustomError(
                    "spec", "parameter '{name}' is of type {kind}; {key} takes {shown}, so only a choice "
                    "(or, for true/false, a bool) parameter can stand for it",
                    {"name": name, "kind": kind, "key": key, "shown": shown, "field": key, "received": name})
            wrong = [v for v in values if v not in allowed]
            if wrong:
                raise PydanticCustomError(
                    "spec", "parameter '{name}' may be {wrong}, which {key} does not take ({key} takes {shown})",
                    {"name": name, "wrong": ", ".join(_literal(v) for v in wrong), "key": key, "shown": shown,
                     "field": key, "received": name})
            refs[cls._field_name(key)] = name
            substituted[key] = values[0]
        if not refs:
            return handler(data)
        layer = handler(substituted)
        if len(_PARAM_REFS) > 100_000:
            _PARAM_REFS.clear()
        _PARAM_REFS[id(layer)] = (layer, refs)
        return layer

    @property
    def parameter_fields(self) -> dict[str, str]:
        """The fields standing for a block parameter (`activation: act`): field -> parameter name."""
        found = _PARAM_REFS.get(id(self))
        return found[1] if found is not None and found[0] is self else {}

    @model_serializer(mode="wrap")
    def _written_parameters(self, handler):
        """Dumped as written: a field standing for a block parameter shows the parameter's name
        (run folders keep the spec, and `diff` compares it)."""
        data = handler(self)
        for field, parameter in self.parameter_fields.items():
            for key in (field, type(self).model_fields[field].alias):
                if key in data:
                    data[key] = parameter
        return data

    @classmethod
    def _field_name(cls, key: str) -> str:
        return next((name for name, field in cls.model_fields.items() if field.alias == key), key)

    def concrete(self, namespace: Mapping[str, Any]) -> "Primitive":
        """This layer with every expression evaluated and checked; raises FieldError. A layer
        without expressions is returned as is; equal values give the same (cached) layer."""
        known = _TEMPLATE_FIELDS.get(id(self))
        if known is None or known[0] is not self:
            state = self.__dict__
            if len(_TEMPLATE_FIELDS) > 100_000:
                _TEMPLATE_FIELDS.clear()
            known = _TEMPLATE_FIELDS[id(self)] = (self, tuple(
                f for f in self._expr_fields if isinstance(state[f], (str, list)) and _holds_expr(state[f])))
        refs = self.parameter_fields
        if not known[1] and not refs:
            return self
        state = self.__dict__
        values = {field: _evaluate(state[field], namespace, (field,)) for field in known[1]}
        values.update({field: namespace[parameter] for field, parameter in refs.items()})
        key = (id(self), repr(values))
        cached = _CONCRETE.get(key)
        if cached is not None and cached[0] is self:
            return cached[1]
        data = {**{k: getattr(self, k) for k in self.model_fields_set}, **values}
        try:
            layer = type(self).model_validate(data)
            _CONCRETE[key] = (self, layer)
            if len(_CONCRETE) > 100_000:
                _CONCRETE.clear()
            return layer
        except ValidationError as error:
            first = error.errors()[0]
            loc = tuple(p for p in first["loc"] if isinstance(p, int) or p in type(self).model_fields)
            text = _lookup({k: getattr(self, k) for k in type(self).model_fields}, loc)
            source = f"'{text}' = {_lookup(data, loc)!r}: " if isinstance(text, str) else ""
            used = expressions.used_values(text, namespace) if isinstance(text, str) else ""
            raise FieldError(f"{source}{first['msg'][:1].lower() + first['msg'][1:]}{used}", loc) from None


# The layers whose fields stand for block parameters (few: those in block bodies that name one),
# by id, with the layer kept so that a reused id never matches; a private attribute would cost
# every layer pydantic's private-attribute set-up.
_PARAM_REFS: dict[int, tuple] = {}
# Per primitive class: the fields a block parameter may stand for, and their values.
_CHOICE_FIELDS: dict[type, dict[str, tuple]] = {}


def _choices_of(annotation: Any) -> tuple:
    """The values of a Literal of strings, of bool (true, false), or of a union of those (None
    aside); () for any other type."""
    if annotation is bool:
        return (True, False)
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        return values if all(isinstance(v, str) for v in values) else ()
    if typing.get_origin(annotation) in (Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        found = [_choices_of(a) for a in parts]
        return tuple(v for values in found for v in values) if all(found) else ()
    return ()


def _literal(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f"'{value}'"


# Every primitive by its `type`, in the order the classes were defined (layers/__init__ imports the families).
_REGISTRY: dict[str, type[Primitive]] = {}


def registered() -> dict[str, type[Primitive]]:
    """The primitives defined so far, by `type`."""
    return dict(_REGISTRY)


# The fields of a layer (by id; the layer is kept, so a reused id never matches) that hold
# expressions: expansion asks once per block instance.
_TEMPLATE_FIELDS: dict[int, tuple] = {}
# Concrete layers by (template id, evaluated values): a ResNet stage evaluates the same
# few layers again and again. The template is kept in the entry, so a reused id never matches.
_CONCRETE: dict[tuple, tuple] = {}


def _holds_expr(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, list):
        return any(_holds_expr(v) for v in value)
    return False


def _evaluate(value: Any, namespace: Mapping[str, Any], field: tuple) -> Any:
    if isinstance(value, str):
        try:
            result = expressions.evaluate_explained(value, namespace)
        except expressions.ExpressionError as error:
            raise FieldError(str(error), field) from None
        if isinstance(result, (str, list, tuple)):
            raise FieldError(f"'{value}' must give a number, not {result!r}{expressions.used_values(value, namespace)}", field)
        return result
    if isinstance(value, list):
        return [_evaluate(v, namespace, field + (i,)) for i, v in enumerate(value)]
    return value


def _lookup(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return data
    return data


def single(layer: Primitive, inputs: list[Shape]) -> Shape:
    if len(inputs) != 1:
        raise ShapeError(f"{layer.describe()} takes one input, got {len(inputs)}")
    return inputs[0]


def image(layer: Primitive, inputs: list[Shape]) -> Shape:
    shape = single(layer, inputs)
    if len(shape) != 3:
        raise ShapeError(f"{layer.describe()} needs an image-shaped input (height, width, channels); received shape {shape}")
    return shape


def window(layer: Primitive, size: int, kernel: int, stride: int, padding: str, axis: str, shape: Shape) -> int:
    """Output length of a sliding window (conv or pool) along one axis, as Keras computes it."""
    if padding == "same":
        return -(-size // stride)  # ceil in integers: sizes may exceed a float's range
    out = (size - kernel) // stride + 1
    if out < 1:
        raise ShapeError(
            f"{layer.describe()} shrinks the {axis} from {size} to {max(out, 0)} "
            f"(window {kernel}, input shape {shape})",
            collapsed=True,
        )
    return out


def spatial(layer: Primitive, shape: Shape, kernel, stride, padding: str, dilation=1) -> tuple[int, int]:
    (h, w, _), (kh, kw), (sh, sw), (dh, dw) = shape, pair(kernel), pair(stride), pair(dilation)
    return (
        window(layer, h, (kh - 1) * dh + 1, sh, padding, "height", shape),
        window(layer, w, (kw - 1) * dw + 1, sw, padding, "width", shape),
    )


Padding = Literal["valid", "same"]
