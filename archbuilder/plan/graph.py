"""The plan: a network as a graph of primitive layers, with static shapes, parameters and MACs.

Blocks, stem and head all expand into `Node`s through one `PlanBuilder`. Static inference happens
as each node is added (`archbuilder.plan.shapes`), so the plan *is* the static description of the
network; `archbuilder.keras.graph` materializes the same nodes as Keras layers, and a test checks
that the two agree on every shipped spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archbuilder.plan.shapes import LayerStats, Shape, ShapeError, infer
from archbuilder.spec.layers import (
    ActivationLayer, AddLayer, BatchNormLayer, ConvLayer,
)

Path_ = tuple[Any, ...]

# A bound on plan size, so that `repeats: 1000000000` is an error in milliseconds rather than a
# hang: the largest shipped network (ResNet-152) has 517 nodes.
MAX_NODES = 20_000


@dataclass(frozen=True)
class Node:
    """One layer of the network.

    `layer` is the layer's spec (None for the input), `inputs` are indices of earlier nodes,
    `group` says which part of the network the node belongs to ("stem", "res2a", "head"), and
    `path` is where in the spec it came from, for error messages.
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

    @property
    def output(self) -> Node:
        return self.nodes[-1]

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
        """Nodes grouped by `group`, in order: [(group, group_type, nodes), ...]."""
        result: list[tuple[str, str, list[Node]]] = []
        for node in self.nodes:
            if not result or result[-1][0] != node.group:
                result.append((node.group, node.group_type, []))
            result[-1][2].append(node)
        return result


class PlanError(ShapeError):
    """A ShapeError located in the spec: `path` and a human `where` ("stage 3 block b")."""

    def __init__(self, message: str, path: Path_, where: str, collapsed: bool):
        super().__init__(f"{where}: {message}" if where else message, collapsed)
        self.path = path
        self.where = where


class PlanBuilder:
    """Appends nodes and infers each one's output as it goes."""

    def __init__(self, name: str, *, use_bias: bool, classes: int | None, batch_norm_axis: int = -1):
        self.plan = Plan(name)
        self.use_bias = use_bias
        self.classes = classes
        self.batch_norm_axis = batch_norm_axis
        self.group = "input"
        self.group_type = "input"
        self.path: Path_ = ()
        self.where = ""
        self.named: dict[str, str] = {}  # layer name -> where it was first used; Keras needs them unique

    def enter(self, group: str, group_type: str, path: Path_, where: str) -> None:
        """Nodes added from now on belong to `group`, which came from spec `path`."""
        self.group, self.group_type, self.path, self.where = group, group_type, path, where

    def shape(self, node: int) -> Shape:
        return self.plan.nodes[node].out_shape

    def input(self, shape: Shape, name: str | None) -> int:
        return self._append("input", name, None, (), LayerStats(tuple(shape)))

    def layer(self, layer, inputs: int | list[int], path: Path_ | None = None) -> int:
        """Add a primitive layer taking `inputs`; returns the new node's index."""
        sources = (inputs,) if isinstance(inputs, int) else tuple(inputs)
        try:
            stats = infer(layer, [self.shape(i) for i in sources], use_bias_default=self.use_bias, classes=self.classes)
        except ShapeError as error:
            raise self.error(str(error), path, error.collapsed) from None
        if isinstance(layer, BatchNormLayer) and self.batch_norm_axis == 3 and len(stats.out_shape) != 3:
            raise self.error(
                f"batch_norm with defaults.batch_norm.axis: 3 needs an image-shaped input (height, width, channels); "
                f"received shape {stats.out_shape}; use axis: -1", path)
        return self._append(layer.type, self._name(layer.name), layer, sources, stats, path)

    def error(self, message: str, path: Path_ | None = None, collapsed: bool = False) -> PlanError:
        return PlanError(message, self.path if path is None else path, self.where, collapsed)

    # Shorthands used by block definitions.
    def conv(self, x: int, filters: int, kernel: int, stride: int = 1, padding: str = "valid", name: str | None = None) -> int:
        return self.layer(ConvLayer(type="conv", filters=filters, kernel=kernel, stride=stride, padding=padding, name=name), x)

    def batch_norm(self, x: int, name: str | None = None) -> int:
        return self.layer(BatchNormLayer(type="batch_norm", name=name), x)

    def activation(self, x: int, activation: str = "relu", name: str | None = None) -> int:
        return self.layer(ActivationLayer(type="activation", activation=activation, name=name), x)

    def add(self, inputs: list[int], name: str | None = None) -> int:
        return self.layer(AddLayer(name=name), inputs)

    def _name(self, name: str | None) -> str | None:
        """Layer names may say `{classes}`, as the notebook names its head `'fc' + str(classes)`."""
        return name.replace("{classes}", str(self.classes)) if name else name

    def _append(self, kind, name, layer, inputs, stats, path: Path_ | None = None) -> int:
        index = len(self.plan.nodes)
        if index >= MAX_NODES:
            raise self.error(f"the network would have more than {MAX_NODES:,} layers", path)
        if name is not None:
            if name in self.named:
                raise self.error(f"layer name '{name}' is already used by {self.named[name]}; layer names must be unique", path)
            self.named[name] = self.where or "the input"
        node = Node(index, kind, name, layer, inputs, stats, self.group, self.group_type,
                    self.path if path is None else path)
        self.plan.nodes.append(node)
        return index
