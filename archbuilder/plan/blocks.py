"""Checks of the block language that need the whole spec, run before anything is expanded:
block names, parameters given and missing, literal parameter values, `from:` references,
expression syntax in parameters, and blocks that use themselves or nest too deeply.
Every problem is returned located; nothing stops at the first. Imports no TensorFlow.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from archbuilder.errors import Problem
from archbuilder.plan.expand import MAX_BLOCK_DEPTH, PLACEHOLDER
from archbuilder.plan.schema import BlockDef, BodyItem, Spec
from archbuilder.spec import expressions
from archbuilder.spec.blocks import BlockCall, StageSpec
from archbuilder.spec.fields import NamePatterns, stage_block
from archbuilder.spec.params import ParamError, check_value
from archbuilder.spec.source import Document, format_path

STAGE_KEYS = ("block", "repeats", "stride", "stride_on", "label", "id")


@dataclass(frozen=True)
class _Blocks:
    """What the checks read: the block types and the stages (of a Spec, or of the parts of an
    invalid document that do validate, so block problems are reported with schema problems)."""

    blocks: dict[str, BlockDef]
    stages: list[StageSpec | None]
    network: frozenset[str] = frozenset()  # variables, multipliers, classes: names every expression has
    stem: tuple = ()  # the stem's and head's items, where block calls may stand too
    head: tuple = ()
    sections: tuple = ()  # (name, items) of each section, in order
    outputs: dict | None = None  # output name -> id
    invalid: frozenset[str] = frozenset()  # block types defined but not valid (their own problems say why)


# Names a block's expressions have besides its parameters and the network's.
POSITION_NAMES = frozenset({"block_index", "repeats", "stage_index", "block_number", "num_blocks", "drop_path",
                            "in_channels", "in_height", "in_width"})
NAME_FIELDS = frozenset({"stage", "letter", "block"})  # only in layer-name patterns
SHAPE_NAMES = frozenset({"in_channels", "in_height", "in_width"})  # what a stem or head item knows besides the network


def _network_names(variables, has_classes: bool) -> frozenset[str]:
    return frozenset({*variables, "width", "depth", "drop_path_rate", *(("classes",) if has_classes else ())})


def check_blocks(spec: Spec, document: Document) -> list[Problem]:
    network = _network_names(spec.variables, spec.classes is not None)
    sections = tuple((name, tuple(items)) for name, items in spec.sections.items())
    return _check(_Blocks(spec.blocks, list(spec.stages), network, tuple(spec.stem), tuple(spec.head), sections,
                          spec.outputs), document)


def check_blocks_of_invalid(document: Document) -> list[Problem]:
    """The block-language problems of a document whose schema check failed, as far as its
    `blocks:` and `stages:` items validate on their own."""
    data = document.data if isinstance(document.data, dict) else {}
    blocks, stages = {}, []
    for name, definition in (data.get("blocks") or {}).items() if isinstance(data.get("blocks"), dict) else ():
        try:
            blocks[name] = BlockDef.model_validate(definition)
        except ValidationError:
            blocks[name] = None
    for stage in data.get("stages") or [] if isinstance(data.get("stages"), list) else []:
        try:
            stages.append(StageSpec.model_validate(stage))
        except ValidationError:
            # Still check its parameters: `repeats: -1` should not hide `filters: [8, 8]`.
            usable = isinstance(stage, dict) and isinstance(stage.get("block"), str)
            stages.append(StageSpec.model_construct(**stage) if usable else None)
    variables = data.get("variables") if isinstance(data.get("variables"), dict) else {}
    network = _network_names(variables, data.get("classes") is not None)
    parts = [tuple(_valid_or_none(item) for item in (data.get(part) if isinstance(data.get(part), list) else []))
             for part in ("stem", "head")]
    raw_sections = data.get("sections") if isinstance(data.get("sections"), dict) else {}
    sections = tuple((name, tuple(_valid_or_none(item) for item in items)) for name, items in raw_sections.items()
                     if isinstance(name, str) and isinstance(items, list))
    outputs = data.get("outputs") if isinstance(data.get("outputs"), dict) else None
    outputs = {k: v for k, v in (outputs or {}).items() if isinstance(k, str) and isinstance(v, str)} or None
    invalid = frozenset(k for k, v in blocks.items() if v is None)
    return _check(_Blocks({k: v for k, v in blocks.items() if v is not None}, stages, network, *parts, sections,
                          outputs, invalid), document)


_BODY_ITEM = TypeAdapter(BodyItem)


def _valid_or_none(item: Any):
    """A stem or head item of an invalid document, if it validates on its own."""
    try:
        return _BODY_ITEM.validate_python(item)
    except ValidationError:
        return None


def _check(spec: _Blocks, document: Document) -> list[Problem]:
    problems: list[Problem] = []

    def problem(path: tuple, message: str, key: bool = False) -> None:
        problems.append(Problem(document.location_of(path, key=key), format_path(path), message))

    for index, stage in enumerate(spec.stages):
        if stage is not None:
            _check_call(spec, stage.block, stage.arguments, ("stages", index), problem, stage=stage)
    for part, items in _bodies(spec):
        for index, item in enumerate(items):
            # `classes` unset is the spec's own problem (said once, at `units: classes`, or by the plan)
            allowed = spec.network | SHAPE_NAMES | {"classes"}
            if isinstance(item, BlockCall):
                _check_call(spec, item.block, item.arguments, (*part, index), problem, allowed=allowed)
            elif item is not None:  # a layer's expressions, with the other problems (not after them)
                _check_layer_expressions(item, allowed, (*part, index), problem)
            if item is not None and isinstance(item.when, str):
                _check_expression(item.when, allowed, (*part, index, "when"), problem)
    _check_network_ids(spec, problem)
    for name, block in spec.blocks.items():
        _check_body(spec, name, block, problem)
    _check_recursion(spec, problem)
    return problems


def _check_call(spec: _Blocks, name: str, arguments: dict, path: tuple, problem, stage: StageSpec | None = None,
                allowed: frozenset[str] | None = None, caller_params: dict | None = None) -> None:
    """A use of block type `name` (by a stage, or in a body where `allowed` are the caller's names
    and `caller_params` the calling block's parameters)."""
    if allowed is None:
        allowed = spec.network | POSITION_NAMES
    if stage is not None and isinstance(stage.repeats, str):
        _check_expression(stage.repeats, spec.network, path + ("repeats",), problem)
    block = spec.blocks.get(name)
    if block is None and name in spec.invalid:
        return  # not unknown: its definition's problems are reported, and calls of it are checked once it is valid
    if block is None:
        valid = sorted(spec.blocks)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problem(path + ("block",), f"unknown block type '{name}'; {hint}valid types: {', '.join(valid)}")
        return
    for key, value in arguments.items():
        if key not in block.params:
            valid = sorted(block.params)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            reserved = f"; stage keys: {', '.join(STAGE_KEYS)}" if stage is not None else ""
            problem(path + (key,), f"block type '{name}' has no parameter '{key}'{hint} "
                    f"(its parameters: {', '.join(valid) or 'none'}{reserved})", key=True)
            continue
        _check_argument(name, key, block.params[key], value, path + (key,), problem, allowed, caller_params or {})
    for key, declared in block.params.items():
        given = key in arguments or (key == "stride" and stage is not None)
        if declared.required and not given:
            problem(path, f"block type '{name}' needs parameter '{key}' ({declared.type})")
    if stage is not None and "stride" in stage.model_fields_set and "stride" not in block.params and stage.stride != 1:
        problem(path + ("stride",), f"block type '{name}' has no 'stride' parameter to give the stage's stride to")


def _check_argument(block: str, key: str, declared, value: Any, path: tuple, problem, allowed: frozenset[str],
                    caller_params: dict) -> None:
    """Literal values are checked now; expressions are checked for syntax (and evaluated per block).
    A choice may be passed on from the caller's own choice parameter (`act: act`), whose every
    choice the called block must take."""
    if declared.type == "choice" and isinstance(value, str) and value not in declared.choices and value in caller_params:
        outer = caller_params[value]
        wrong = [c for c in outer.choices or () if c not in declared.choices]
        if outer.type != "choice" or wrong:
            what = f"may be {', '.join(map(repr, wrong))}" if outer.type == "choice" else f"is of type {outer.type}"
            problem(path, f"block type '{block}' parameter '{key}' expects one of {', '.join(declared.choices)}; "
                          f"the parameter '{value}' passed to it {what}")
        return
    expressions_found = []

    def walk(item: Any, item_path: tuple) -> None:
        if isinstance(item, str) and declared.type != "choice":
            expressions_found.append((item, item_path))
        elif isinstance(item, list):
            for i, child in enumerate(item):
                walk(child, item_path + (i,))

    walk(value, path)
    for text, item_path in expressions_found:
        _check_expression(text, allowed, item_path, problem)
    if expressions_found:
        return
    try:
        check_value(declared, value)
    except ParamError as error:
        problem(path, f"block type '{block}' parameter '{key}' {error}")


def _check_expression(text: str, allowed: frozenset[str], path: tuple, problem) -> bool:
    """Syntax and names of one expression, before anything is evaluated."""
    try:
        undefined = sorted(expressions.names(text) - allowed)
    except expressions.ExpressionError as error:
        problem(path, str(error))
        return False
    if undefined:
        close = difflib.get_close_matches(undefined[0], sorted(allowed), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problem(path, f"undefined name '{undefined[0]}' in '{text}'; {hint}names: {', '.join(sorted(allowed))}")
        return False
    return True


def _check_layer_expressions(layer, allowed: frozenset[str], path: tuple, problem) -> None:
    def walk(value: Any, field_path: tuple) -> None:
        if isinstance(value, str):
            _check_expression(value, allowed, field_path, problem)
        elif isinstance(value, list):
            for i, child in enumerate(value):
                walk(child, field_path + (i,))

    for field in layer._expression_fields():
        walk(getattr(layer, field), path + (field,))
    patterns = layer.name
    if isinstance(patterns, NamePatterns):
        patterns = [p for p in (patterns.notebook, patterns.keras) if p]
    for pattern in [patterns] if isinstance(patterns, str) else patterns or []:
        for match in PLACEHOLDER.finditer(pattern):
            if not _check_expression(match.group(1), allowed | NAME_FIELDS, path + ("name",), problem):
                break


def _bodies(spec: _Blocks) -> list[tuple[tuple, tuple]]:
    """The bodies outside the stages by path, in network order: stem, each section, head."""
    return [(("stem",), spec.stem), *((("sections", name), items) for name, items in spec.sections),
            (("head",), spec.head)]


def _check_network_ids(spec: _Blocks, problem) -> None:
    """The ids of the stem's, sections' and head's items and of stages name one network-wide
    namespace: a stem, section or head item may take (`from:`) any earlier one, across parts;
    `input` is the part's input. Each of `outputs:` names one of them."""
    bodies = _bodies(spec)
    order: list[tuple[tuple, Any]] = [((*bodies[0][0], i), item) for i, item in enumerate(bodies[0][1])]
    order += [(("stages", i), stage) for i, stage in enumerate(spec.stages) if stage is not None]
    order += [((*part, i), item) for part, items in bodies[1:] for i, item in enumerate(items)]
    known: dict[str, tuple] = {}
    stages = {stage.id for stage in spec.stages if stage is not None and isinstance(getattr(stage, "id", None), str)}

    def unknown(ref: str) -> bool:  # `STAGE.K` is known once STAGE is (K is checked when the stage is expanded)
        block = stage_block(ref)
        return ref not in known if block is None else not (block[0] in known and block[0] in stages)

    for position, (path, item) in enumerate(order):
        # An item whose schema check failed keeps what was written (a mapping where an id belongs):
        # the schema's error says so; only strings can name anything here.
        refs = getattr(item, "from_", None)
        for ref in ([refs] if isinstance(refs, str) else refs if isinstance(refs, (list, tuple)) else []):
            if isinstance(ref, str) and ref != "input" and unknown(ref):
                later = any(getattr(other, "id", None) == ref for _, other in order[position:])
                problem(path + ("from",), f"from: '{ref}' is " + (
                    "a later layer; a layer takes only earlier layers" if later else
                    f"not the id of an earlier layer (ids so far: {', '.join(['input', *known])})"))
        identifier = getattr(item, "id", None)
        if isinstance(identifier, str):
            if identifier == "input" or identifier in known:
                problem(path + ("id",), f"id '{identifier}' is " + (
                    "reserved for the input of the stem and of the head" if identifier == "input" else
                    f"already the id of {format_path(known[identifier])}; ids name one layer in the network"))
            else:
                known[identifier] = path
    for name, ref in (spec.outputs or {}).items():
        if isinstance(ref, str) and unknown(ref):
            close = difflib.get_close_matches(ref, list(known), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problem(("outputs", name), f"output '{name}' names '{ref}', which is not the id of a layer, block call, "
                                       f"stage or section item; {hint}ids: {', '.join(known) or 'none'}")


def _check_body(spec: _Blocks, name: str, block: BlockDef, problem) -> None:
    base = ("blocks", name, "layers")
    ids: set[str] = set()
    allowed = spec.network | POSITION_NAMES | frozenset(block.params)
    for index, item in enumerate(block.layers):
        path = base + (index,)
        if isinstance(item.when, str):
            _check_expression(item.when, allowed, path + ("when",), problem)
        if not isinstance(item, BlockCall):
            _check_layer_expressions(item, allowed, path, problem)
        refs = item.from_
        for ref in ([refs] if isinstance(refs, str) else refs or []):
            if ref != "input" and ref not in ids:
                later = any(other.id == ref for other in block.layers[index:])
                problem(path + ("from",), f"from: '{ref}' is " + (
                    "a later layer; a layer takes only earlier layers" if later else
                    f"not the id of an earlier layer (ids so far: {', '.join(['input', *sorted(ids)])})"))
        if item.id is not None:
            if item.id == "input" or item.id in ids:
                problem(path + ("id",), f"id '{item.id}' is " + ("reserved for the block's input" if item.id == "input" else "used twice"))
            ids.add(item.id)
        if isinstance(item, BlockCall):
            _check_call(spec, item.block, item.arguments, path, problem, allowed=allowed, caller_params=block.params)


def _check_recursion(spec: _Blocks, problem) -> None:
    """A block may not use itself, directly or through others, and calls nest at most MAX_BLOCK_DEPTH.

    In time linear in the calls per block (a block calling another twenty times, eight deep, is
    twenty calls, not 20**8 chains): a call is on a cycle when its callee reaches the caller back;
    the other calls form a graph without cycles, in which each block's longest chain of callers
    is counted once."""
    calls = {name: [(index, item.block) for index, item in enumerate(block.layers)
                    if isinstance(item, BlockCall) and item.block in spec.blocks]
             for name, block in spec.blocks.items()}
    reaching: dict[str, dict[str, str | None]] = {}  # start -> {block it reaches: the block calling it}

    def way(start: str, goal: str) -> list[str] | None:
        """The shortest chain of calls from `start` to `goal` (both included), or None."""
        if start not in reaching:
            parents: dict[str, str | None] = {start: None}
            queue = [start]
            for name in queue:
                for _, callee in calls[name]:
                    if callee not in parents:
                        parents[callee] = name
                        queue.append(callee)
            reaching[start] = parents
        parents = reaching[start]
        if goal not in parents:
            return None
        chain = [goal]
        while chain[-1] != start:
            chain.append(parents[chain[-1]])
        return chain[::-1]

    acyclic: dict[str, list[tuple[int, str]]] = {name: [] for name in calls}
    for name, edges in calls.items():
        for index, callee in edges:
            back = way(callee, name)
            if back is not None:
                problem(("blocks", name, "layers", index, "block"),
                        f"block type '{callee}' uses itself: {' -> '.join((*back, callee))}")
            else:
                acyclic[name].append((index, callee))

    # The longest chain of blocks ending at each block (itself included), in topological order.
    depth = dict.fromkeys(calls, 1)
    caller: dict[str, str | None] = dict.fromkeys(calls)
    waiting = dict.fromkeys(calls, 0)
    for edges in acyclic.values():
        for callee in {callee for _, callee in edges}:
            waiting[callee] += 1
    ready = [name for name, count in waiting.items() if count == 0]
    for name in ready:
        for callee in {callee for _, callee in acyclic[name]}:
            if depth[name] + 1 > depth[callee]:
                depth[callee], caller[callee] = depth[name] + 1, name
            waiting[callee] -= 1
            if waiting[callee] == 0:
                ready.append(callee)
    for name, edges in acyclic.items():
        if depth[name] < MAX_BLOCK_DEPTH:
            continue
        chain = [name]
        while len(chain) < MAX_BLOCK_DEPTH:
            chain.append(caller[chain[-1]])
        for index, callee in edges:
            problem(("blocks", name, "layers", index, "block"),
                    f"blocks nest deeper than {MAX_BLOCK_DEPTH}: {' -> '.join((*chain[::-1], callee))}")
