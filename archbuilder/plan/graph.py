"""The plan: a network as a graph of primitive layers, with static shapes, parameters and MACs.

Blocks, stem and head all expand into `Node`s through one `PlanBuilder`. Static inference happens
as each node is added (each primitive's `infer`, archbuilder/layers), so the plan *is* the static description of the
network; `archbuilder.keras.graph` materializes the same nodes as Keras layers, and a test checks
that the two agree on every shipped spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archbuilder.layers import Context, LayerStats, Shape, ShapeError

Path_ = tuple[Any, ...]

# A bound on plan size, so that `repeats: 1000000000` is an error in milliseconds rather than a
# hang: the largest shipped network (ResNet-152) has 517 nodes.
MAX_NODES = 20_000


@dataclass(frozen=True)
class Node:
    """One layer of the network.

    `layer` is the layer's spec (None for the input), `inputs` are indices of earlier nodes,
    `group` says which part of the network the node belongs to ("stem", "res2a", "head"), and
    `path` is where in the spec it came from, for error messages. `shares` is the index of the
    earlier node whose layer (and weights) this one runs again (a block call's `share:`): its
    parameters are counted there, so its stats count none, but its own MACs and shapes.
    """

    index: int
    kind: str
    name: str | None
    layer: Any
    inputs: tuple[int, ...]
    stats: LayerStats
    group: str
    group_type: str
    path: Path_
    shares: int | None = None

    @property
    def out_shape(self) -> Shape:
        return self.stats.out_shape

    @property
    def params(self) -> int:
        return self.stats.params


@dataclass
class Plan:
    name: str
    nodes: list[Node] = field(default_factory=list)
    # The spec's named outputs (`outputs:`), name -> node index; empty: the last node is the output.
    outputs: dict[str, int] = field(default_factory=dict)

    @property
    def output(self) -> Node:
        """The network's one output (the last node); with named outputs, see `output_nodes`."""
        return self.nodes[-1]

    def output_nodes(self) -> dict[str, Node] | None:
        """The named outputs' nodes by name, or None for a network with one unnamed output."""
        return {name: self.nodes[index] for name, index in self.outputs.items()} if self.outputs else None

    @property
    def trainable_params(self) -> int:
        return sum(n.stats.trainable for n in self.nodes)

    @property
    def non_trainable_params(self) -> int:
        return sum(n.stats.non_trainable for n in self.nodes)

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def macs(self) -> int:
        return sum(n.stats.macs for n in self.nodes)

    def groups(self) -> list[tuple[str, str, list[Node]]]:
        """Nodes grouped by `group`, in order: [(group, group_type, nodes), ...]. A new stage starts
        a new group even if its blocks are named as the last one's (two stages with one label)."""
        result: list[tuple[str, str, list[Node]]] = []
        last = None
        for node in self.nodes:
            key = (node.group, node.path[:2] if node.path[:1] == ("stages",) else ())
            if key != last:
                result.append((node.group, node.group_type, []))
                last = key
            result[-1][2].append(node)
        return result


class PlanError(ShapeError):
    """A ShapeError located in the spec: `path` and a human `where` ("stage 3 block b").

    Inside a block, `path` is in the block's definition and `origin` is the stage that used it."""

    def __init__(self, message: str, path: Path_, where: str, collapsed: bool, origin: Path_ | None = None):
        super().__init__(f"{where}: {message}" if where else message, collapsed)
        self.path = path
        self.where = where
        self.origin = origin


class PlanBuilder:
    """Appends nodes and infers each one's output as it goes."""

    def __init__(self, name: str, context: Context):
        self.plan = Plan(name)
        self.context = context
        self.group = "input"
        self.group_type = "input"
        self.path: Path_ = ()
        self.where = ""
        self.named: dict[str, str] = {}  # layer name -> where it was first used; Keras needs them unique
        self.origins: list[tuple] = []  # per node: (where, spec path, error path), for later checks
        self._inferred: dict[tuple, tuple] = {}  # (id(layer), input shapes) -> (layer, LayerStats)
        # Inside a call that reuses an earlier call's layers (`share:`): its nodes take the first
        # call's names, so names are not claimed again.
        self.reusing = 0

    def enter(self, group: str, group_type: str, path: Path_, where: str) -> None:
        """Nodes added from now on belong to `group`, which came from spec `path`."""
        self.group, self.group_type, self.path, self.where = group, group_type, path, where

    def shape(self, node: int) -> Shape:
        return self.plan.nodes[node].out_shape

    def input(self, shape: Shape, name: str | None) -> int:
        return self._append("input", name, None, (), LayerStats(tuple(shape)))

    def layer(self, layer, inputs: int | list[int], error_path: Path_ | None = None, name: str | None = None) -> int:
        """Add a primitive layer (all expressions evaluated) named `name` (its pattern filled in)
        taking `inputs`; returns the new node's index. Errors are located at `error_path` (the
        layer in a block definition) if given. The node, not the layer, carries the name, so a
        block's layers are shared by its instances."""
        sources = (inputs,) if isinstance(inputs, int) else tuple(inputs)
        shapes = tuple(self.plan.nodes[i].stats.out_shape for i in sources)
        # A stage's blocks repeat the same (cached) layers on the same shapes: infer each pair once.
        # `infer` is pure given the layer, its input shapes and this builder's context.
        known = self._inferred.get((id(layer), shapes))
        if known is not None and known[0] is layer:
            stats = known[1]
        else:
            try:
                stats = layer.infer(list(shapes), self.context)
            except ShapeError as error:
                message = str(error)
                if isinstance(layer.name, str) and name and name != layer.name:  # describe() shows the pattern
                    message = message.replace(f"'{layer.name}'", f"'{name}'")
                raise self.error(message, error_path, error.collapsed) from None
            self._inferred[(id(layer), shapes)] = (layer, stats)  # the layer kept: its id is not reused
        return self._append(layer.type, name, layer, sources, stats, error_path)

    def error(self, message: str, path: Path_ | None = None, collapsed: bool = False) -> PlanError:
        return PlanError(message, self.path if path is None else path, self.where, collapsed,
                         origin=self.path if path is not None and path[:1] == ("blocks",) else None)

    def _append(self, kind, name, layer, inputs, stats, path: Path_ | None = None) -> int:
        index = len(self.plan.nodes)
        if index >= MAX_NODES:
            raise self.error(f"the network would have more than {MAX_NODES:,} layers", path)
        if name is not None and not self.reusing:
            if name in self.named:
                raise self.error(f"layer name '{name}' is already used by {self.named[name]}; layer names must be unique", path)
            self.named[name] = self.where or "the input"
        node = Node(index, kind, name, layer, inputs, stats, self.group, self.group_type, self.path)
        self.plan.nodes.append(node)
        self.origins.append((self.where, self.path, path))
        return index

    def check_all_used(self) -> None:
        """Refuse a layer whose output reaches nothing: Keras would silently leave it out of the
        model, so the plan (and `info`) would describe layers the model does not have."""
        used = set(self.plan.outputs.values()) or {len(self.plan.nodes) - 1}
        for node in reversed(self.plan.nodes):
            if node.index in used:
                # an input read only for its shape (`resize` to another map's size) is not a use:
                # Keras leaves out what feeds no output
                used.update(node.layer.keras_inputs(list(node.inputs)) if node.layer else node.inputs)
        for node in self.plan.nodes:
            if node.index not in used:
                where, path, error_path = self.origins[node.index]
                self.enter(node.group, node.group_type, path, where)
                described = node.layer.describe() if node.layer else "the input"
                if isinstance(node.layer.name, str) and node.name:
                    described = described.replace(f"'{node.layer.name}'", f"'{node.name}'")
                raise self.error(f"the output of {described} is never used: "
                                 "no later layer takes it (`from:`) and it is not " + (
                                     "one of the network's `outputs:`" if self.plan.outputs else "the network's output"),
                                 error_path)
