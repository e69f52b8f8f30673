"""The base class of every spec model: unknown keys are errors, values are immutable, and true and
false are no numbers (nor numbers true or false)."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class WrittenValue:
    """A true or false written where only a number fits, or a number where only true or false
    does. pydantic's lax mode reads true as 1 (`classes: true`, `--set stages.0.repeats=true`) and
    1 as true (`when: 1`, `use_bias: 0`); a spec means neither, and the JSON Schema refuses both.
    Strict mode would also refuse 64.0 for an integer, which expressions produce; so such a value
    is swapped for this before validation, which no field type accepts: the field's own error
    follows, located, beside every other problem of the document, saying `expected`."""

    __slots__ = ("value", "expected")

    def __init__(self, value: bool | int | float, expected: str):
        self.value, self.expected = value, expected

    def __repr__(self) -> str:
        return str(self.value).lower() if isinstance(self.value, bool) else repr(self.value)


class StrictModel(BaseModel):
    # inf and nan are YAML floats (.inf, .nan) but no sensible size, rate or epsilon.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        changed = None
        number_keys, boolean_keys = _number_keys(cls)
        for keys, mark in ((number_keys, _marked), (boolean_keys, _marked_number)):
            for key in keys.intersection(data):
                marked = mark(data[key])
                if marked is not data[key]:
                    changed = dict(data) if changed is None else changed
                    changed[key] = marked
        return data if changed is None else changed


_NUMBER_KEYS: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def _number_keys(cls: type[BaseModel]) -> tuple[frozenset[str], frozenset[str]]:
    """The keys (as written) of fields that take numbers but neither true/false nor a nested model,
    and of those that take true/false but no number."""
    found = _NUMBER_KEYS.get(cls)
    if found is None:
        kinds = {field.alias or name: _kinds(field.annotation) for name, field in cls.model_fields.items()}
        found = _NUMBER_KEYS[cls] = (
            frozenset(key for key, kind in kinds.items() if kind & {int, float} and not kind & {bool, Any, BaseModel}),
            frozenset(key for key, kind in kinds.items() if bool in kind and not kind & {int, float, Any, BaseModel}))
    return found


def _kinds(annotation: Any) -> set:
    """The scalar types an annotation is made of (int, float, bool, str, Any, BaseModel for a model)."""
    if annotation is Any:
        return {Any}
    if isinstance(annotation, type):
        return {BaseModel} if issubclass(annotation, BaseModel) else {annotation}
    if typing.get_origin(annotation) is typing.Literal:
        return {type(value) for value in typing.get_args(annotation)}
    kinds: set = set()
    for arg in typing.get_args(annotation):
        kinds |= _kinds(arg)
    return kinds


def _marked(value: Any) -> Any:
    """`value` with each true/false (in lists and mappings too) as a WrittenValue; itself if none."""
    if isinstance(value, bool):
        return WrittenValue(value, "a number, not true or false")
    if isinstance(value, list):
        items = [_marked(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    if isinstance(value, dict):
        items = {key: _marked(item) for key, item in value.items()}
        return items if any(items[key] is not value[key] for key in value) else value
    return value


def _marked_number(value: Any) -> Any:
    """`value` as a WrittenValue if it is a number (not true/false); itself otherwise."""
    return WrittenValue(value, "true or false, not a number") if type(value) in (int, float) else value
