"""Expand a validated Spec into a Plan (stem layers, every block's layers, head layers).

This is the step where "stage 3, 4 bottleneck blocks, stride 2" becomes res3a_branch2a …
res3d_branch2c, with each layer's static output shape, parameters and MACs. Blocks are YAML
definitions (archbuilder/plan/schema.py, spec/blocks.py): each instance binds its parameters, evaluates the
expressions of its body against them and its input's shape, skips layers whose `when:` is false,
wires `from:` references and appends primitive layers. Stem and head are bodies too. No TensorFlow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from archbuilder.layers import Context, FieldError, Primitive, format_shape
from archbuilder.plan.graph import MAX_NODES, Plan, PlanBuilder, PlanError
from archbuilder.plan.naming import block_group, block_letter, name_fields
from archbuilder.plan.schema import BlockDef, Spec
from archbuilder.spec import expressions
from archbuilder.spec.blocks import BlockCall
from archbuilder.spec.fields import NamePatterns, stage_block
from archbuilder.spec.params import ParamError, check_value

MAX_INPUT_SEARCH = 1 << 14
MAX_BLOCK_DEPTH = 8  # a block using a block using ... this deep (spec checks refuse deeper chains)
# Body items processed in one expansion: bounds the work of layers skipped by `when:` (which add
# no nodes, so the node bound alone would not stop `repeats: 100000000` of an all-skipped block).
MAX_STEPS = 200_000
NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PATTERN_PARTS: dict[str, list[str]] = {}  # a name pattern split at its placeholders, once


@dataclass(frozen=True)
class _Shared:
    """The first block call with a `share:` key: the layers later calls with the key run again."""

    block: str
    input_shape: tuple
    nodes: range
    where: str


def _layers_differ(plan: Plan, mine: range, theirs: range) -> str:
    """What differs between a sharing call's nodes and the first call's ('' if nothing): the
    layers, their weights' count (a position embedding's depends on its input), or the shapes a
    layer is sized by without taking them (`resize` to another map's size)."""
    if len(mine) != len(theirs):
        return f"{len(mine)} layers where the first call built {len(theirs)}"
    for a, b in ((plan.nodes[i], plan.nodes[j]) for i, j in zip(mine, theirs)):
        if a.layer != b.layer:
            ours, first = a.layer.model_dump(), b.layer.model_dump()
            fields = [key for key in ours if ours[key] != first.get(key)] if type(a.layer) is type(b.layer) else []
            if not fields:
                return f"its {a.layer.describe()} has the first call's {b.layer.describe()} in its place"
            return (f"its {a.layer.describe()} has " + ", ".join(f"{k} {ours[k]!r}" for k in fields) +
                    " where the first call's has " + ", ".join(f"{k} {first[k]!r}" for k in fields))
        if a.params != b.params:
            return f"its {a.layer.describe()} would hold {a.params:,} weights where the first call's holds {b.params:,}"
        if len(a.layer.keras_inputs(list(a.inputs))) < len(a.inputs) and \
                [plan.nodes[i].out_shape for i in a.inputs] != [plan.nodes[i].out_shape for i in b.inputs]:
            return f"its {a.layer.describe()} is sized by other inputs than the first call's"
    return ""


@dataclass(frozen=True)
class Instance:
    """Where a body is being expanded: its expression names, its layer-name fields, and the
    document paths used to locate errors."""

    namespace: Mapping[str, Any]
    names: Mapping[str, Any]  # namespace plus {stage}, {letter}, {block} for name patterns
    def_path: tuple  # path of the body's `layers:` (or `stem:`/`head:`) in the document
    depth: int = 0
    chain: tuple[str, ...] = ()


def expand(spec: Spec, input_shape: tuple[int, int, int] | None = None) -> Plan:
    """The spec's plan; raises PlanError where a layer cannot take its input."""
    return _Expander(spec).run(tuple(input_shape or spec.input.shape))


def context_of(spec: Spec) -> Context:
    bn = spec.defaults.batch_norm
    return Context(use_bias=spec.defaults.use_bias, classes=spec.classes, batch_norm_axis=bn.axis,
                   batch_norm_epsilon=bn.epsilon, batch_norm_momentum=bn.momentum,
                   batch_norm_synchronized=bn.synchronized,
                   kernel_initializer=spec.defaults.kernel_initializer)


def network_names(spec: Spec) -> dict[str, Any]:
    """The names every expression may use: variables, multipliers, drop_path_rate, classes."""
    names: dict[str, Any] = dict(spec.variables)
    names.update(width=spec.multipliers.width, depth=spec.multipliers.depth, drop_path_rate=spec.drop_path_rate)
    if spec.classes is not None:
        names["classes"] = spec.classes
    return names


class _Expander:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.scheme = spec.defaults.naming
        self.network = network_names(spec)
        self.g = PlanBuilder(spec.name, context_of(spec))
        self.steps = 0
        self.ids: dict[str, int] = {}  # the network's ids (stem, stages, head), for `from:` across parts
        self.shared: dict[str, _Shared] = {}  # `share:` key -> the first call with it
        self.stage_blocks: dict[str, int] = {}  # a stage's id -> its number of blocks

    def run(self, input_shape) -> Plan:
        spec, g = self.spec, self.g
        x = g.input(input_shape, spec.input.name)
        x = self._linear_body("stem", "stem", ("stem",), spec.stem, x)
        repeats = [self._repeats(i) for i in range(len(spec.stages))]
        num_blocks = sum(repeats)
        block_number = 0
        for stage_index, stage in enumerate(spec.stages):
            label = spec.stage_label(stage_index)
            stride_at = 0 if stage.stride_on == "first" else repeats[stage_index] - 1
            for block_index in range(repeats[stage_index]):
                g.enter(block_group(self.scheme, label, block_index), stage.block, ("stages", stage_index),
                        f"stage {label} block {block_letter(block_index)}")
                position = {
                    **self.network, "block_index": block_index, "repeats": repeats[stage_index],
                    "stage_index": stage_index, "block_number": block_number, "num_blocks": num_blocks,
                    "drop_path": spec.drop_path_rate * block_number / max(1, num_blocks - 1),
                }
                arguments = stage.arguments
                if "stride" in spec.blocks[stage.block].params:
                    # The stride block gets the stage's stride (or, if the stage sets none, the
                    # block's default); every other block of the stage gets 1.
                    if block_index != stride_at:
                        arguments["stride"] = 1
                    elif "stride" in stage.model_fields_set:
                        arguments["stride"] = stage.stride
                x = self._block(stage.block, arguments, ("stages", stage_index), x, position,
                                name_fields(label, block_index), depth=0, chain=(), scale=True)
                block_number += 1
                if stage.id is not None:
                    self.ids[f"{stage.id}.{block_index}"] = x  # `STAGE.K`: block K's output
            if stage.id is not None:
                self.ids[stage.id] = x
                self.stage_blocks[stage.id] = repeats[stage_index]
        for name, items in spec.sections.items():
            x = self._linear_body(name, "section", ("sections", name), items, x)
        self._linear_body("head", "head", ("head",), spec.head, x)
        if spec.outputs:
            g.plan.outputs = {name: self._id(self.ids, ref, ("outputs", name)) for name, ref in spec.outputs.items()}
        g.check_all_used()
        return g.plan

    # -- stem, sections and head: each layer is its own group, with the names of its own input ---

    def _linear_body(self, part: str, kind: str, prefix: tuple, layers: list, x: int) -> int:
        # `from:` may name any earlier id of the network; `input` is this part's input.
        ids: dict[str, int] = {**self.ids, "input": x}
        previous = x
        where = part if kind != "section" else f"section {part}"
        for index, layer in enumerate(layers):
            self.g.enter(part, kind, prefix + (index,), f"{where} layer {index}")
            namespace = {**self.network, **self._shape_names(previous)}
            instance = Instance(namespace, namespace, prefix)
            previous = self._item(layer, index, instance, ids, previous)
        self.ids.update((key, node) for key, node in ids.items() if key != "input")
        return previous

    # -- blocks ----------------------------------------------------------------------------------

    def _block(self, name: str, arguments: dict, call_path: tuple, x: int, position: dict,
               fields: dict, depth: int, chain: tuple, scale: bool, caller: Mapping | None = None) -> int:
        """Instantiate block type `name` on node `x` with `arguments` (literals or expressions,
        evaluated in the `caller`'s names: the calling block's, or the stage's position)."""
        if depth > MAX_BLOCK_DEPTH:
            raise self.g.error(f"blocks nest deeper than {MAX_BLOCK_DEPTH}: {' -> '.join((*chain, name))}", call_path)
        block: BlockDef = self.spec.blocks[name]
        shape_names = self._shape_names(x)
        if caller is None:
            caller = {**position, **shape_names}
        params = self._bind(name, block, arguments, caller, call_path, scale)
        namespace = {**position, **params, **shape_names}
        instance = Instance(namespace, {**namespace, **fields}, ("blocks", name, "layers"), depth, (*chain, name))
        ids: dict[str, int] = {"input": x}
        previous = x
        for index, item in enumerate(block.layers):
            previous = self._item(item, index, instance, ids, previous, position, fields)
        return previous

    def _bind(self, name: str, block: BlockDef, arguments: dict, caller: Mapping, call_path: tuple, scale: bool) -> dict:
        """The block's parameters: given values (expressions evaluated in the caller's names),
        checked against their declarations, scaled by the width multiplier, defaults filled in."""
        params: dict[str, Any] = {}
        width = self.spec.multipliers.width
        for key, declared in block.params.items():
            if key not in arguments:
                params[key] = declared.default
                continue
            path = call_path + (key,)
            value = self._argument(arguments[key], declared, caller, path)
            try:
                value = check_value(declared, value)
            except ParamError as error:
                raise self.g.error(f"block '{name}' parameter '{key}': {error}", path) from None
            if scale and declared.scale == "width" and width != 1.0:
                value = ([expressions.make_divisible(v * width, 8) for v in value] if isinstance(value, list)
                         else expressions.make_divisible(value * width, 8))
            params[key] = value
        return params

    def _argument(self, value: Any, declared, caller: Mapping, path: tuple) -> Any:
        if isinstance(value, str) and declared.type != "choice":
            return self._evaluate(value, caller, path)
        if isinstance(value, str) and value not in declared.choices and value in caller:
            return caller[value]  # a choice passed on from the caller's own parameter (`act: act`)
        if isinstance(value, list):
            return [self._argument(v, declared, caller, path + (i,)) for i, v in enumerate(value)]
        return value

    def _evaluate(self, text: str, namespace: Mapping, path: tuple) -> Any:
        try:
            return expressions.evaluate_explained(text, namespace)
        except expressions.ExpressionError as error:
            raise self.g.error(str(error), path) from None

    # -- one body item: a primitive layer or a block call ---------------------------------------

    def _item(self, item, index: int, instance: Instance, ids: dict, previous: int,
              position: dict | None = None, fields: dict | None = None) -> int:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self.g.error(f"the network takes more than {MAX_STEPS:,} steps to expand; it is too large")
        path = instance.def_path + (index,)
        sources = self._sources(item, ids, previous, path)
        if item.when is not None and not self._condition(item.when, instance.namespace, path + ("when",)):
            out = sources[0]  # a skipped layer is an identity of its (first) input
        elif isinstance(item, BlockCall):
            out = self._call(item, path, sources[0], instance, position, fields)
        else:
            out = self._layer(item, instance, sources, path)
        if item.id is not None:
            ids[item.id] = out
        return out

    def _call(self, item: BlockCall, path: tuple, x: int, instance: Instance, position, fields) -> int:
        """A block call; with `share:`, the first call of its key creates the layers and a later
        one runs them again: expanded as usual, then checked to be the same layers on an input of
        the same channels, its nodes marked as reusing the first call's (no parameters of their own)."""
        first = self.shared.get(item.share) if item.share is not None else None
        if first is not None:
            self._check_shareable(item, path, x, first)
            self.g.reusing += 1
        start = len(self.g.plan.nodes)
        try:
            out = self._block(item.block, item.arguments, path, x, dict(position or self.network), dict(fields or {}),
                              instance.depth + 1, instance.chain, scale=False, caller=instance.namespace)
        finally:
            if first is not None:
                self.g.reusing -= 1
        nodes = range(start, len(self.g.plan.nodes))
        if item.share is None:
            return out
        if first is None:
            self.shared[item.share] = _Shared(item.block, self.g.shape(x), nodes, self.g.where)
        else:
            self._reuse(item.share, path, first, nodes)
        return out

    def _check_shareable(self, item: BlockCall, path: tuple, x: int, first: "_Shared") -> None:
        shape = self.g.shape(x)
        prefix = f"share: '{item.share}' reuses the layers of {first.where} (block '{first.block}')"
        if item.block != first.block:
            raise self.g.error(f"{prefix}; a call sharing them must call that block, not '{item.block}'", path + ("block",))
        if len(shape) != len(first.input_shape) or shape[-1] != first.input_shape[-1]:
            raise self.g.error(f"{prefix}, whose input was {format_shape(first.input_shape)} ({first.input_shape[-1]} "
                               f"channels); this call's input is {format_shape(shape)}, so the weights cannot fit it",
                               path + ("share",))

    def _reuse(self, key: str, path: tuple, first: "_Shared", nodes: range) -> None:
        plan = self.g.plan
        difference = _layers_differ(plan, nodes, first.nodes)
        if difference:
            raise self.g.error(f"share: '{key}' reuses the layers of {first.where}, but this call's arguments build "
                               f"other layers: {difference}; pass the same arguments", path + ("share",))
        for mine, theirs in zip(nodes, first.nodes):
            original = plan.nodes[theirs]
            source = original.shares if original.shares is not None else theirs
            node = plan.nodes[mine]
            plan.nodes[mine] = replace(node, name=plan.nodes[source].name, shares=source,
                                       stats=replace(node.stats, trainable=0, non_trainable=0))

    def _sources(self, item, ids: dict, previous: int, path: tuple) -> list[int]:
        refs = item.from_
        if refs is None:
            return [previous]
        refs = [refs] if isinstance(refs, str) else refs
        return [self._id(ids, ref, path + ("from",)) for ref in refs]

    def _id(self, ids: dict, ref: str, path: tuple) -> int:
        """The node `ref` names. The spec checks refuse unknown ids before; what only expansion knows
        is how many blocks a stage has, which `STAGE.K` must fit."""
        if ref in ids:
            return ids[ref]
        block = stage_block(ref)
        if block is not None and block[0] in self.stage_blocks:
            count = self.stage_blocks[block[0]]
            raise self.g.error(f"'{ref}' names block {block[1]} of stage '{block[0]}', which has {count} block"
                               f"{'s' if count > 1 else ''} ('{block[0]}.0' to '{block[0]}.{count - 1}')", path)
        raise self.g.error(f"'{ref}' is not an earlier layer's id", path)

    def _condition(self, text: str, namespace: Mapping, path: tuple) -> bool:
        if isinstance(text, bool):
            return text
        value = self._evaluate(text, namespace, path)
        if not isinstance(value, bool):
            raise self.g.error(f"'{text}' must be true or false, not {value!r}{expressions.used_values(text, namespace)}", path)
        return value

    def _layer(self, layer: Primitive, instance: Instance, sources: list[int], path: tuple) -> int:
        name = self._name(layer.name, instance.names, path + ("name",))
        try:
            concrete = layer.concrete(instance.namespace)
        except FieldError as error:
            raise self.g.error(str(error), path + error.field) from None
        inputs = sources if concrete.merge else sources[0] if len(sources) == 1 else sources
        return self.g.layer(concrete, inputs, path if path[0] == "blocks" else None, name=name)

    def _name(self, pattern, names: Mapping, path: tuple) -> str | None:
        if isinstance(pattern, NamePatterns):
            pattern = getattr(pattern, self.scheme)
        if pattern is None or "{" not in pattern:
            return pattern

        parts = _PATTERN_PARTS.get(pattern)
        if parts is None:
            if len(_PATTERN_PARTS) > 10_000:  # bounded, for long-lived processes
                _PATTERN_PARTS.clear()
            parts = _PATTERN_PARTS[pattern] = PLACEHOLDER.split(pattern)  # literal, {text}, literal, ...
        filled = list(parts)
        for index in range(1, len(parts), 2):
            text = parts[index]
            value = names[text] if text in names else self._evaluate(text, names, path)
            filled[index] = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        name = "".join(filled)
        if not NAME.match(name) or len(name) > 128:
            raise self.g.error(f"name '{pattern}' gives '{name[:140]}', which is not a layer name "
                               "(letters, digits, _ . -; at most 128 characters)", path)
        return name

    # -- helpers ---------------------------------------------------------------------------------

    def _shape_names(self, node: int) -> dict[str, int]:
        shape = self.g.shape(node)
        names = {"in_channels": shape[-1]}
        if len(shape) == 3:
            names.update(in_height=shape[0], in_width=shape[1])
        return names

    def _repeats(self, stage_index: int) -> int:
        stage = self.spec.stages[stage_index]
        path = ("stages", stage_index, "repeats")
        value = stage.repeats
        if isinstance(value, str):
            value = self._evaluate(value, self.network, path)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
                raise self.g.error(f"repeats must be a positive number (received {value!r})", path)
        # Bounded before multiplying: `repeats: 10**400` is an int no float can hold.
        repeats = math.ceil(value * self.spec.multipliers.depth) if value <= MAX_NODES else value
        if repeats > MAX_NODES:  # each block adds a layer or more; refuse before looping that long
            self.g.enter("", "", ("stages", stage_index), "")
            shown = f"{repeats:,}" if repeats < 10**30 else "more than 10^30"
            raise self.g.error(f"the network would have more than {MAX_NODES:,} layers "
                               f"({shown} blocks in stages.{stage_index})", path)
        return repeats


def smallest_input(spec: Spec, budget: int = 200, node_budget: int = 50_000) -> tuple[int, int] | None:
    """The smallest (height, width) for which the spec's plan works, channels unchanged.

    Height and width are independent through convolutions and pooling, so each is searched with
    the other held large. At most `budget` plans, and about `node_budget` nodes in all, are
    expanded (a 20,000-layer network would otherwise take a minute); None if nothing up to
    MAX_INPUT_SEARCH works or the budget runs out.
    """
    channels = spec.input.shape[2]
    try:
        nodes = len(expand(spec, (MAX_INPUT_SEARCH, MAX_INPUT_SEARCH, channels)).nodes)
    except PlanError:
        return None
    budget = min(budget, node_budget // nodes)
    tries = [0]

    def works(height: int, width: int) -> bool:
        tries[0] += 1
        if tries[0] > budget:
            raise _OutOfBudget
        try:
            expand(spec, (height, width, channels))
            return True
        except PlanError:
            return False

    def search(fits) -> int | None:
        if not fits(MAX_INPUT_SEARCH):
            return None
        low, high = 1, MAX_INPUT_SEARCH  # fits(high) holds
        while low < high:
            middle = (low + high) // 2
            if fits(middle):
                high = middle
            else:
                low = middle + 1
        return low

    try:
        height = search(lambda h: works(h, MAX_INPUT_SEARCH))
        width = search(lambda w: works(MAX_INPUT_SEARCH, w))
        if height is None or width is None:
            return None
        # Shapes that must match (shortcut adds) can make some sizes fail between working ones.
        while not works(height, width):
            height, width = height + 1, width + 1
        return height, width
    except _OutOfBudget:
        return None


class _OutOfBudget(Exception):
    pass
