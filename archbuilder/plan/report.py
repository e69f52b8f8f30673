"""Human and JSON summaries of a plan: per-stage tables and totals. No TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archbuilder.plan.graph import Node, Plan
from archbuilder.layers import format_shape
from archbuilder.spec.source import format_path


@dataclass(frozen=True)
class Row:
    """One line of the `info` table: a stage (or the stem, the head, one block)."""

    name: str
    kind: str
    blocks: int
    output_shape: tuple[int, ...]
    params: int
    macs: int

    def as_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "blocks": self.blocks,
                "output_shape": list(self.output_shape), "params": self.params, "macs": self.macs}


def rows(plan: Plan, stage_labels: list[int], per_block: bool = False) -> list[Row]:
    """Rows per stage (or per block with `per_block`), in network order; the input is left out.

    Stages are told apart by position, not label: two stages may share a label (`label: 3`), and
    their rows then also name the stage (`stage 3 (stages.1)`)."""
    result: list[Row] = []
    parts: list[tuple[Any, str, str, list[list[Node]]]] = []
    for group, group_type, nodes in plan.groups():
        if group == "input":
            continue
        path = nodes[0].path
        if path and path[0] == "stages":
            shared = shared_label_suffix(path, stage_labels)
            key, name = path[:2], f"stage {stage_labels[path[1]]}{shared}"
        else:
            key, name, shared = group, group, ""
        if per_block or not parts or parts[-1][0] != key:
            parts.append((key, group + shared if per_block else name, group_type, []))
        parts[-1][3].append(nodes)
    for _, name, kind, blocks in parts:
        nodes = [n for block in blocks for n in block]
        result.append(Row(name, kind, len(blocks) if kind not in ("stem", "section", "head") else 0,
                          nodes[-1].out_shape, sum(n.params for n in nodes), sum(n.stats.macs for n in nodes)))
    return result


def shared_label_suffix(path, stage_labels: list[int]) -> str:
    """' (stages.1)' for a node of a stage whose label another stage also has: what tells the two
    apart in `info`'s rows and `plot`'s boxes; '' otherwise, and outside the stages."""
    if len(path) < 2 or path[0] != "stages":
        return ""
    return f" ({format_path(path[:2])})" if stage_labels.count(stage_labels[path[1]]) > 1 else ""


def totals_json(plan: Plan) -> dict:
    """The totals; a network with named outputs gives each output's shape and layer (`outputs`)
    in place of the one `output_shape`."""
    totals = {
        "total_params": plan.total_params,
        "trainable_params": plan.trainable_params,
        "non_trainable_params": plan.non_trainable_params,
        "macs": plan.macs,
    }
    named = plan.output_nodes()
    if named is None:
        return {**totals, "output_shape": list(plan.output.out_shape)}
    return {**totals, "outputs": {name: {"shape": list(node.out_shape), "part": _part_name(node)}
                                  for name, node in named.items()}}


def totals_lines(plan: Plan) -> list[str]:
    named = plan.output_nodes()
    outputs = [] if named is None else [f"Output {name}: {format_shape(node.out_shape)} ({_part_name(node)})"
                                        for name, node in named.items()]
    return [
        *outputs,
        f"Total params: {plan.total_params:,}",
        f"Trainable params: {plan.trainable_params:,}",
        f"Non-trainable params: {plan.non_trainable_params:,}",
    ]


def _part_name(node: Node) -> str:
    """Where a node is: its part ('head', a section's name) or, in a stage, its block ('res3d')."""
    return node.group


def table(table_rows: list[Row]) -> str:
    header = ("part", "type", "blocks", "output shape", "params", "MACs")
    body = [(r.name, r.kind, str(r.blocks or ""), format_shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}")
            for r in table_rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = {2, 4, 5}

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(b) for b in body), rule])
