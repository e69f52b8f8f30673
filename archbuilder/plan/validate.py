"""Validation: YAML file -> resolved document -> Spec -> Plan, every problem located.

Nothing is built before this passes. Schema problems are all reported at once, each as
`file:line:col: path.in.spec: what is wrong (received: ...)`; shape problems (which need a
schema-valid spec) follow from the plan. No TensorFlow is imported.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from archbuilder.errors import Location, Problem, SpecError, abbreviated
from archbuilder.layers import LAYER_TYPES
from archbuilder.plan import size_guard
from archbuilder.plan.blocks import check_blocks, check_blocks_of_invalid
from archbuilder.plan.expand import MAX_INPUT_SEARCH, expand, smallest_input
from archbuilder.plan.graph import Plan, PlanError
from archbuilder.plan.schema import BODY_TAGS, Spec
from archbuilder.spec.base import WrittenValue
from archbuilder.spec.resolve import resolve_document, resolve_text
from archbuilder.spec.source import Document, Path_, format_path


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that passed every check, with its plan (static shapes, params, MACs)."""

    spec: Spec
    plan: Plan
    document: Document
    path: Path


def load_checked_spec(path: str | Path, overrides: Iterable[str] = (), max_memory: int | None = None) -> CheckedSpec:
    """Load, resolve, validate and plan a spec file; raise SpecError listing every problem.

    `max_memory` (bytes; default: archbuilder.plan.size_guard.memory_limit()) bounds the estimated
    memory of one forward pass, so an absurd spec is refused before anything is allocated.
    """
    return _checked(resolve_document(path, overrides), Path(path), max_memory)


def load_checked_data(data: dict, overrides: Iterable[str] = (), max_memory: int | None = None) -> CheckedSpec:
    """As `load_checked_spec`, for a spec held in a dict (the Python API). Problems are located
    in `<dict>`, at the lines of the dict written as YAML (`yaml.safe_dump`, keys unsorted)."""
    import yaml

    name = "<dict>"
    try:
        text = yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as error:
        raise SpecError([Problem(Location(name, 1, 1), "", f"not plain data (received: {error})")]) from None
    return _checked(resolve_text(text, name, overrides), Path(name), max_memory)


def _plain(value: Any) -> Any:
    """Tuples as lists, so `shape=(64, 64, 3)` reads as it does in YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _checked(document: Document, path: Path, max_memory: int | None) -> CheckedSpec:
    spec = parse_spec(document)
    problems = check_blocks(spec, document)
    if problems:
        raise SpecError(problems)
    try:
        plan = expand(spec)
    except PlanError as error:
        raise SpecError(_plan_problems(error, spec, document, str(path))) from None
    check_memory(plan, document, size_guard.memory_limit() if max_memory is None else max_memory)
    return CheckedSpec(spec, plan, document, path)


def check_memory(plan: Plan, document: Document, limit: int, batch_size: int = 1, training: bool = False,
                 slots: int = 2) -> None:
    """Raise SpecError, located at the largest layer, if the estimate exceeds `limit` bytes."""
    estimate = size_guard.estimate(plan, batch_size, training, slots)
    if estimate.total > limit:
        where = estimate.largest.path
        raise SpecError([Problem(document.location_of(where), format_path(where), estimate.describe(limit),
                                 size_guard.RAISE_THE_LIMIT)])


def parse_spec(document: Document) -> Spec:
    try:
        return Spec.model_validate(document.data)
    except ValidationError as error:
        # dict.fromkeys: a union's members may each report the same problem
        problems = list(dict.fromkeys(_schema_problem(e, document) for e in error.errors()))
        raise SpecError(problems + check_blocks_of_invalid(document)) from None


def _plan_problems(error: PlanError, spec: Spec, document: Document, top_file: str) -> list[Problem]:
    """The plan's problem; when shapes collapse, also any problem that no input size can fix
    (a duplicate layer name further on), which would otherwise hide behind "no input size works"."""
    if error.collapsed:
        try:
            expand(spec, (MAX_INPUT_SEARCH, MAX_INPUT_SEARCH, spec.input.shape[2]))
        except PlanError as other:
            if not other.collapsed:
                where, note = _plan_location(document, error.path, top_file, error.origin)
                collapse = Problem(where, format_path(error.path),
                                   f"{note}{error} (received input.shape: {list(spec.input.shape)})")
                return [collapse, _plan_problem(other, spec, document, top_file)]
    return [_plan_problem(error, spec, document, top_file)]


def _plan_location(document: Document, path, top_file: str, origin=None) -> tuple[Location, str]:
    """Where a plan problem is shown: the layer's own place, unless that is in an extended file
    and the file the user gave (or a `--set`) changed the network: then the change, which is what
    broke a parent that works on its own, with the layer's place in the parent as a note.
    A change inside the failing layer comes first, then any change to the layers before it.
    For a problem inside a block's definition, the stage using the block (`origin`) decides."""
    own = document.location_of(path)
    anchor = path if origin is None else origin
    anchored = document.location_of(anchor)

    def changes(prefix) -> list[Location]:
        return [loc for p, loc in document.values.items() if p[: len(prefix)] == prefix
                and (loc.file == top_file or loc.file.startswith("<--set"))]

    if anchored.file == top_file or anchored.file.startswith("<--set"):
        return own, ""  # the user's own file (or --set) is where it shows: nothing to redirect
    patches = changes(anchor) or [loc for part in ("input", "defaults", "stem", "stages", "head")
                                for loc in changes((part,))]
    if not patches:
        return own, ""
    patch = min(patches, key=lambda loc: (not loc.file.startswith("<--set"), loc.line, loc.column))
    return patch, f"(at the layer of {own}, after this change) "


def _plan_problem(error: PlanError, spec: Spec, document: Document, top_file: str) -> Problem:
    location, note = _plan_location(document, error.path, top_file, error.origin)
    message = note + str(error)
    if error.collapsed:
        smallest = smallest_input(spec)
        channels = spec.input.shape[2]
        message += (
            f"; the smallest input that works is [{smallest[0]}, {smallest[1]}, {channels}]"
            if smallest else "; no input size up to 16384 that works was found within the search budget"
        )
        message += f" (received input.shape: {list(spec.input.shape)})"
    if error.origin is not None:  # found in a block's definition: also say which stage used it
        message += f"; in block '{error.path[1]}' used by {format_path(error.origin)} at {document.location_of(error.origin)}"
    return Problem(location, format_path(error.path), message)


# ---------------------------------------------------------------------------------------------
# pydantic errors -> located problems
# ---------------------------------------------------------------------------------------------


def _schema_problem(error: dict, document: Document) -> Problem:
    path = _data_path(error["loc"], document.data)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    received = error.get("input")
    if kind == "extra_forbidden":
        key = path[-1]
        valid = _valid_keys(path[:-1], document.data)
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; valid keys: {', '.join(valid)}" if valid else "")
        return Problem(document.location_of(path, key=True), format_path(path), f"unknown key '{abbreviated(str(key))}'{hint}")
    if kind == "missing":
        if path in document.keys:  # the key was there and a `null` removed it (`--set name=`, or a child spec)
            return Problem(document.keys[path], format_path(path),
                           f"missing required key '{path[-1]}': null here removes it, and it has no default")
        return Problem(document.location_of(path[:-1]), format_path(path), f"missing required key '{path[-1]}'")
    if kind == "union_tag_not_found":  # a body item with neither `type` nor `block`
        message = f"missing key 'type' (a layer: one of {', '.join(LAYER_TYPES)}) or 'block' (a block call)"
        return Problem(document.location_of(path), format_path(path), message)
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        message = f"unknown layer type '{tag}'; valid types: {', '.join(LAYER_TYPES)}"
        return Problem(document.location_of(path + ("type",)), format_path(path + ("type",)), message)
    if isinstance(received, WrittenValue):
        return Problem(document.location_of(path), format_path(path),
                       f"expected {received.expected} (received: {received!r})")
    if kind == "spec":  # our own validators: they say which field, and what to show as received
        path = path + ((ctx["field"],) if "field" in ctx else ())
        received = ctx.get("received")
    message = _sentence(error["msg"])
    if received is not None and not isinstance(received, dict):
        message += f" (received: {_show(received)})"
    return Problem(document.location_of(path), format_path(path), message)


def _data_path(loc: tuple, data: Any) -> Path_:
    """pydantic's loc without the tagged-union and type-choice steps it inserts."""
    path: list[Any] = []
    current = data
    tag_seen = None  # the layer whose discriminator step was skipped: an `activation` layer's
    for part in loc:  # loc is (..., "activation" (the tag), "activation" (the field)); skip only the first
        if isinstance(current, dict) and current.get("type") == part and part in LAYER_TYPES and tag_seen is not current:
            tag_seen = current
            continue  # the discriminator's value
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and current.get("type") == part:
            continue  # the discriminator's value
        elif part in BODY_TAGS:
            continue  # which kind of block-body item pydantic tried
        elif isinstance(part, str) and (part[:1].isupper() or part.startswith("constrained-")):
            continue  # which model or constrained type of a union (`name: {notebook: ...}` or a string)
        elif isinstance(part, str) and (part.startswith(("list[", "int", "str", "float", "bool", "function-", "literal[")) or
                                        "[" in part):
            continue  # which member of a Union pydantic tried
        else:
            path.append(part)
            current = None
    return tuple(path)


def _valid_keys(path: Path_, data: Any) -> list[str]:
    """The keys (as written: `from`, not `from_`) of the model that sits at `path` in the Spec.
    A list's or a union's model is chosen by the value it holds, so a layer's are its type's."""
    annotation: Any = Spec
    current = data
    for part in path:
        if isinstance(part, int):  # a list item: the list's annotation, resolved below by the item
            ok = isinstance(current, list) and -len(current) <= part < len(current)
            current = current[part] if ok else None
            continue
        model = _item_model(annotation, current)
        field = _field_by_key(model, part)
        if field is None:
            return []  # pydantic's location may still name union members ('NamePatterns'): no data keys
        annotation = field.annotation
        current = current.get(part) if isinstance(current, dict) else None
    model = _item_model(annotation, current)
    return sorted(field.alias or name for name, field in model.model_fields.items()) if model else []


def _field_by_key(model: Any, key: Any):
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return next((field for name, field in model.model_fields.items() if (field.alias or name) == key), None)


def _item_model(annotation: Any, value: Any) -> Any:
    """The BaseModel inside Optional[...] / list[...] / a union that `value` stands for: the layer
    type its `type` names, the block call its `block` makes, or the one model there is."""
    models: list[Any] = []
    candidates: list[Any] = [annotation]
    while candidates:
        current = candidates.pop(0)
        if isinstance(current, type) and issubclass(current, BaseModel):
            models.append(current)
        else:
            candidates.extend(a for a in typing.get_args(current) if a is not type(None))
    if len(models) <= 1 or not isinstance(value, dict):
        return models[0] if models else None
    for model in models:
        type_field = model.model_fields.get("type")
        if type_field is not None and value.get("type") in typing.get_args(type_field.annotation):
            return model
    untyped = [model for model in models if "type" not in model.model_fields]
    return next((model for model in untyped if "block" in model.model_fields and "block" in value),
                untyped[0] if untyped and "type" not in value else None)


def _sentence(message: str) -> str:
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value).replace("'", "")
    if isinstance(value, bool):
        text = str(value).lower()
    return text if len(text) <= 60 else text[:57] + "..."

