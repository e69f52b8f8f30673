"""Model diagrams, rendered by Graphviz through pydot, as PNG or SVG.

Two levels:

- `layers`: every Keras layer with its name and shapes, by Keras's own `keras.utils.plot_model`
  (what the notebook's `plot_model` / `model_to_dot` cells draw).
- `blocks`: one box per block (stem, each residual block with its type, filters and stride,
  head), the main path between them and each block's shortcut drawn beside it, dashed. Drawn
  from the static plan, so it needs no TensorFlow, and ResNet-152's 50 blocks stay readable.

    render(checked, "resnet50.svg", level="blocks")
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from archbuilder.atomic import atomic_path
from archbuilder.errors import Remedy, UserError
from archbuilder.file_kinds import DIAGRAM_SUFFIXES, suffix
from archbuilder.layers import format_shape
from archbuilder.plan.report import shared_label_suffix

if TYPE_CHECKING:
    from archbuilder.plan.graph import Node, Plan
    from archbuilder.plan.validate import CheckedSpec

FORMATS = tuple(s.lstrip(".") for s in DIAGRAM_SUFFIXES)
LEVELS = ("layers", "blocks")
DPI = 96  # Keras's default 200 makes ResNet-50's layer diagram a PNG of ~100 million pixels

INSTALL_HINT = (
    "Install Graphviz: `apt-get install graphviz` on Debian/Ubuntu (or run ./setup.sh as root), "
    "`brew install graphviz` on macOS; then check that `dot -V` works."
)


def require_graphviz() -> None:
    """Raise a UserError saying how to install what is missing: pydot or Graphviz's `dot`."""
    try:
        import pydot  # noqa: F401
    except ImportError:
        raise UserError("plot needs the Python package pydot: `pip install pydot` (or ./setup.sh)") from None
    if shutil.which("dot") is None:
        raise UserError(f"plot needs Graphviz, and its `dot` program is not on PATH. {INSTALL_HINT}")


def output_format(path: str | os.PathLike) -> str:
    fmt = suffix(path).lstrip(".")
    if fmt not in FORMATS:
        raise UserError(f"{path}: the diagram's file name must end in .png or .svg (received: {Path(path).name})")
    return fmt


def render(checked: "CheckedSpec", out: str | os.PathLike, level: str = "blocks", model=None) -> Path:
    """Draw the checked spec at `level` into `out` (.png or .svg), atomically; return the path.

    The layer level draws `model` if given (the spec's model, already built), else builds it.
    """
    if level not in LEVELS:
        raise UserError(f"unknown diagram level '{level}'; valid levels: {', '.join(LEVELS)}")
    out = Path(out)
    fmt = output_format(out)
    require_graphviz()
    if level == "blocks":
        graph = block_dot(checked.plan, checked.spec)
        with atomic_path(out) as tmp:
            _write(lambda: graph.write(str(tmp), format=fmt, prog="dot"))
        return out
    from archbuilder.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()  # TensorFlow's native start-up lines stay off the terminal
    import keras

    from archbuilder.keras.graph import build_model

    if model is None:
        model = build_model(checked.spec, checked.plan)
    with atomic_path(out, suffix=f".{fmt}") as tmp:
        # Keras picks the format from the extension (and passes it to `dot` as is, where `-TPNG`
        # fails): the temporary name ends in the lower-case one.
        _write(lambda: keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True,
                                              show_layer_names=True, dpi=DPI))
    return out


def _write(draw) -> None:
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pydot prints dot's failure before raising it
            draw()
    except FileNotFoundError as error:  # `dot` vanished between the check and the call
        raise UserError(f"Graphviz could not be run ({error}). {INSTALL_HINT}") from None
    except AssertionError as error:  # pydot's word for `dot` failing (it aborts on some graphs' layouts)
        code = re.search(r"returned code: (-?\d+)", str(error))
        raise UserError("Graphviz's dot failed to lay out this graph" + (f" (exit code {code[1]})" if code else ""),
                        Remedy("; draw it at {level}", (("level", "blocks"),))) from None


# ---------------------------------------------------------------------------------------------
# Block level
# ---------------------------------------------------------------------------------------------


@dataclass
class Box:
    """One box of the block diagram: a group of plan nodes (the stem, a block, the head)."""

    id: str
    kind: str  # "input", "stem", "section", "head" or a block type such as "bottleneck"
    lines: list[str]
    stage: str | None = None  # a cluster label for blocks ("stage 3"), None outside stages
    layers: list[str] = field(default_factory=list)  # names of its named layers


@dataclass
class Arrow:
    tail: str
    head: str
    shortcut: str | None = None  # None for the main path, else "identity" / "projection ..."


@dataclass
class BlockDiagram:
    boxes: list[Box] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)


def block_diagram(plan: "Plan", spec=None) -> BlockDiagram:
    """Boxes and arrows of the block-level diagram, from the plan alone (no TensorFlow).

    A group's nodes that take an input from outside the group are its entries: the first one in
    plan order starts the main path, any later one is the shortcut. A shortcut entering at the
    addition is an identity; one entering a convolution is a projection.
    """
    diagram = BlockDiagram()
    group_of: dict[int, str] = {}
    for group, group_type, nodes in plan.groups():
        box_id = group + _shared_label_suffix(nodes[0], spec)  # two stages' "res3a" stay two boxes
        for node in nodes:
            group_of[node.index] = box_id
        lines = _box_lines(group, group_type, nodes, spec) + _sharing_lines(plan, nodes)
        # A named output (`outputs:`) is said in the box it leaves from.
        lines += [f"⇒ output {name}" for name, index in plan.outputs.items() if group_of.get(index) == box_id]
        diagram.boxes.append(Box(box_id, group_type, lines, _stage_label(nodes[0], spec),
                                 [n.name for n in nodes if n.name]))
        entries = [(i, node, slot) for node in nodes for slot, i in enumerate(node.inputs) if group_of.get(i) != box_id]
        for position, (source, node, slot) in enumerate(entries):
            tail = group_of[source]
            if position == 0:
                diagram.arrows.append(Arrow(tail, box_id))
            else:
                diagram.arrows.append(Arrow(tail, box_id, _shortcut_label(node, slot)))
    return diagram


def block_dot(plan: "Plan", spec=None):
    """The block diagram as a pydot graph, top to bottom, stages as labelled clusters."""
    import pydot

    diagram = block_diagram(plan, spec)
    blocks = sum(box.kind not in ("input", "stem", "section", "head") for box in diagram.boxes)
    graph = pydot.Dot(graph_type="digraph", rankdir="TB", dpi=str(DPI), nodesep="0.3", ranksep="0.25",
                      fontname="Helvetica", label=_quote(f"{plan.name}: {blocks} blocks"),
                      labelloc="t")
    graph.set_node_defaults(shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    graph.set_edge_defaults(fontname="Helvetica", fontsize="9")
    colours = {"input": "#eeeeee", "stem": "#dde8f5", "section": "#efe3f5", "head": "#f5e6d3"}
    clusters: dict[str, object] = {}
    for box in diagram.boxes:
        # The tooltip (shown on hover in an SVG viewer) lists the box's named layers.
        node = pydot.Node(_quote(box.id), label=_quote("\n".join(box.lines)),
                          fillcolor=colours.get(box.kind, "#e3f1e0"), tooltip=_quote(", ".join(box.layers) or box.id))
        if box.stage is None:
            graph.add_node(node)
            continue
        if box.stage not in clusters:
            cluster = pydot.Cluster(f"stage_{len(clusters)}", label=_quote(box.stage), style="dashed",
                                    color="#999999", fontname="Helvetica", fontsize="10", labeljust="l")
            clusters[box.stage] = cluster
            graph.add_subgraph(cluster)
        clusters[box.stage].add_node(node)
    for arrow in diagram.arrows:
        if arrow.shortcut is None:
            graph.add_edge(pydot.Edge(_quote(arrow.tail), _quote(arrow.head), weight="10"))
        else:
            # Leaving and entering on the east side draws the shortcut as a loop beside the block.
            graph.add_edge(pydot.Edge(_quote(arrow.tail), _quote(arrow.head), style="dashed", color="#555555",
                                      label=_quote(arrow.shortcut), tailport="e", headport="e",
                                      constraint="false"))
    return graph


def _box_lines(group: str, group_type: str, nodes: list["Node"], spec) -> list[str]:
    out = _shape(nodes[-1].out_shape)
    params = sum(n.params for n in nodes)
    if group_type == "input":
        return [f"input {out}"]
    if group_type in ("stem", "section", "head"):
        steps = " → ".join(_layer_word(n) for n in nodes)
        return [group, *_wrap(steps, 48), f"→ {out}   {params:,} params"]
    facts, stride = _block_facts(nodes, spec)
    lines = [f"{group}  {group_type}"]
    if facts or (stride and stride != 1):
        lines.append(facts + (f"  stride {stride}" if stride and stride != 1 else ""))
    lines.append(f"→ {out}   {params:,} params")
    return lines


def _sharing_lines(plan: "Plan", nodes: list["Node"]) -> list[str]:
    """'shares weights with section heads item 0' for each call whose layers a `share:` runs again."""
    origins = dict.fromkeys(_origin(plan.nodes[n.shares]) for n in nodes if n.shares is not None)
    return [f"shares weights with {origin}" for origin in origins]


def _origin(node: "Node") -> str:
    """Where in the spec a node was made: a stem, section or head item, or the block (`res3a`)."""
    path = node.path
    if path[:1] == ("sections",) and len(path) >= 3:
        return f"section {path[1]} item {path[2]}"
    if path[:1] in (("stem",), ("head",)) and len(path) >= 2:
        return f"{path[0]} item {path[1]}"
    return node.group


def _block_facts(nodes: list["Node"], spec) -> tuple[str, int | None]:
    """The parameters its stage gives the block (`filters 64, 64, 256`) and its stride (the
    largest convolution stride in the block)."""
    facts = ""
    path = nodes[0].path
    if spec is not None and len(path) >= 2 and path[0] == "stages":
        arguments = spec.stages[path[1]].arguments
        facts = "  ".join(f"{key} {', '.join(map(str, value)) if isinstance(value, list) else value}"
                          for key, value in arguments.items() if key not in ("kernel", "shortcut"))
    strides = [_first(getattr(n.layer, "stride", 1) or 1) for n in nodes if n.kind in ("conv", "depthwise_conv")]
    return facts[:60], max(strides, default=None)


def _stage_label(node: "Node", spec) -> str | None:
    path = node.path
    if len(path) >= 2 and path[0] == "stages":
        label = spec.stage_label(path[1]) if spec is not None else path[1]
        return f"stage {label}{_shared_label_suffix(node, spec)}"
    return None


def _shared_label_suffix(node: "Node", spec) -> str:
    """' (stages.1)' for a block of a stage whose label another stage also has, as `info` shows it."""
    return "" if spec is None else shared_label_suffix(node.path, spec.stage_labels())


def _shortcut_label(node: "Node", slot: int = 0) -> str:
    """What an arrow entering `node` at its input `slot` from another box is."""
    if node.kind in ("resize", "cropping") and slot == 1:  # the map whose height and width it takes
        return "size of"
    if node.kind == "add":
        return "identity"
    if node.kind in ("concat", "cropping"):  # an encoder's map taken by a decoder (U-Net): no projection
        return "skip: " + ("concat" if node.kind == "concat" else "crop")
    stride = _first(getattr(node.layer, "stride", 1) or 1)
    return "projection" + (f" /{stride}" if stride != 1 else "")


def _layer_word(node: "Node") -> str:
    layer = node.layer
    kind = node.kind
    if kind == "conv":
        word = f"conv {_size(layer.kernel)} {layer.filters}" + (f" /{_first(layer.stride)}" if _first(layer.stride) != 1 else "")
    elif kind in ("max_pool", "average_pool"):
        word = f"{kind.replace('_', ' ')} {_size(layer.pool)}"
    elif kind == "activation":
        word = layer.activation
    elif kind == "dense":
        word = f"dense {node.out_shape[-1]}" + (f" {layer.activation}" if getattr(layer, "activation", None) else "")
    else:
        word = kind.replace("_", " ")
    return f"{word} ({node.name})" if node.name else word


def _wrap(text: str, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split(" → "):
        candidate = f"{current} → {word}" if current else word
        if current and len(candidate) > width:
            lines.append(current + " →")
            current = word
        else:
            current = candidate
    return lines + [current] if current else lines


def _first(value) -> int:
    return value if isinstance(value, int) else value[0]


def _size(value) -> str:
    return f"{value}×{value}" if isinstance(value, int) else f"{value[0]}×{value[1]}"


def _shape(shape) -> str:
    return format_shape(shape, "×")


def _quote(text: str) -> str:
    """A Graphviz double-quoted string (pydot passes names and labels through verbatim)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
