"""Two checked specs side by side: the fields that differ and per-part parameters and MACs.

Both sides are compared fully resolved (extends, `--set`, schema defaults), so two files that
say the same thing in different words show no field differences. No TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archbuilder.plan import report
from archbuilder.plan.validate import CheckedSpec
from archbuilder.spec.blocks import BlockCall, StageSpec


@dataclass(frozen=True)
class FieldChange:
    """One dotted path whose value differs; `None` on a side means the path is absent there."""

    path: str
    a: Any
    b: Any

    def as_json(self) -> dict:
        return {"path": self.path, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class PartPair:
    """One part (stem, stage N, head) with each side's row, or None where only one side has it."""

    name: str
    a: report.Row | None
    b: report.Row | None

    def as_json(self) -> dict:
        side = lambda row: None if row is None else {"kind": row.kind, "blocks": row.blocks,  # noqa: E731
                                                     "output_shape": list(row.output_shape),
                                                     "params": row.params, "macs": row.macs}
        return {"name": self.name, "a": side(self.a), "b": side(self.b),
                "params_delta": _value(self.b, "params") - _value(self.a, "params"),
                "macs_delta": _value(self.b, "macs") - _value(self.a, "macs")}


@dataclass(frozen=True)
class Comparison:
    a: CheckedSpec
    b: CheckedSpec
    fields: list[FieldChange]
    parts: list[PartPair]

    def as_json(self) -> dict:
        totals_a, totals_b = report.totals_json(self.a.plan), report.totals_json(self.b.plan)
        return {
            "a": {"file": str(self.a.path), "name": self.a.spec.name, **totals_a},
            "b": {"file": str(self.b.path), "name": self.b.spec.name, **totals_b},
            "fields": [f.as_json() for f in self.fields],
            "parts": [p.as_json() for p in self.parts],
            "delta": {key: totals_b[key] - totals_a[key]
                      for key in ("total_params", "trainable_params", "non_trainable_params", "macs")},
        }


def compare(a: CheckedSpec, b: CheckedSpec) -> Comparison:
    return Comparison(a, b, field_changes(_resolved(a), _resolved(b)), _pair_parts(_rows(a), _rows(b)))


def field_changes(a: Any, b: Any, prefix: str = "") -> list[FieldChange]:
    """Leaf-by-leaf differences of two plain-data trees; lists compare item by item.

        >>> field_changes({"s": [{"r": 3}], "shape": [64, 64]}, {"s": [{"r": 6}, {"r": 1}], "shape": [9, 64]})
        [FieldChange(path='s.0.r', a=3, b=6), FieldChange(path='s.1', a=None, b={'r': 1}), FieldChange(path='shape', a=[64, 64], b=[9, 64])]
    """
    if isinstance(a, dict) and isinstance(b, dict):
        changes = []
        for key in [*a, *(k for k in b if k not in a)]:
            changes += field_changes(a.get(key), b.get(key), f"{prefix}{key}.")
        return changes
    # A list of plain values (a shape) reads best whole, and so does a layer list whose items
    # changed type; other lists (stages, layers of the same types) compare item by item.
    if isinstance(a, list) and isinstance(b, list) and not _whole(a) and not _whole(b) \
            and not _layer_lists_of_other_types(a, b):
        changes = []
        for index in range(max(len(a), len(b))):
            changes += field_changes(a[index] if index < len(a) else None,
                                     b[index] if index < len(b) else None, f"{prefix}{index}.")
        return changes
    return [] if a == b else [FieldChange(prefix.rstrip("."), a, b)]


def _whole(items: list) -> bool:
    return not any(isinstance(item, (dict, list)) for item in items)


def _layer_lists_of_other_types(a: list, b: list) -> bool:
    types = lambda items: [item.get("type") if isinstance(item, dict) else None for item in items]  # noqa: E731
    common = min(len(a), len(b))
    return types(a)[:common] != types(b)[:common]


def _resolved(checked: CheckedSpec) -> dict:
    """The spec as plain data, keys as written (`from`), with every block call's parameter defaults
    filled in, so a default written out is no difference. exclude_none: an optional field left out
    and one set to null mean the same here. `reference` describes the file (published counts), not
    the network, so it is no difference between networks."""
    data = checked.spec.model_dump(mode="json", exclude_none=True, exclude={"reference"}, by_alias=True)
    blocks = checked.spec.blocks
    for stage in data.get("stages", []):
        _fill_defaults(stage, blocks, skip=StageSpec.model_fields)
    for items in [data.get("stem", []), data.get("head", []), *data.get("sections", {}).values(),
                  *(definition.get("layers", []) for definition in data.get("blocks", {}).values())]:
        for item in items:
            if "block" in item:
                _fill_defaults(item, blocks, skip=BlockCall.model_fields)
    return data


def _fill_defaults(call: dict, blocks: dict, skip) -> None:
    """A stage's or block call's arguments with the block type's defaults for those not given."""
    block = blocks.get(call.get("block"))
    for key, declared in (block.params.items() if block is not None else ()):
        if key not in call and key not in skip and not declared.required:
            call[key] = declared.default


def _rows(checked: CheckedSpec) -> list[report.Row]:
    labels = checked.spec.stage_labels()
    return report.rows(checked.plan, labels)


def _pair_parts(a: list[report.Row], b: list[report.Row]) -> list[PartPair]:
    by_name_b = {row.name: row for row in b}
    names = [row.name for row in a] + [row.name for row in b if row.name not in {r.name for r in a}]
    # Keep network order: B-only parts (an extra stage) go before the head.
    names.sort(key=lambda name: (name == "head", name != "stem"))
    by_name_a = {row.name: row for row in a}
    return [PartPair(name, by_name_a.get(name), by_name_b.get(name)) for name in names]


def _value(row: report.Row | None, attribute: str) -> int:
    return 0 if row is None else getattr(row, attribute)


def table(comparison: Comparison) -> str:
    """The parts side by side, with a totals line."""
    header = ("part", "params A", "params B", "Δ params", "MACs A", "MACs B", "Δ MACs")
    show = lambda row, attribute: "-" if row is None else f"{getattr(row, attribute):,}"  # noqa: E731
    body = []
    for pair in comparison.parts:
        body.append((pair.name, show(pair.a, "params"), show(pair.b, "params"),
                     _signed(_value(pair.b, "params") - _value(pair.a, "params")),
                     show(pair.a, "macs"), show(pair.b, "macs"),
                     _signed(_value(pair.b, "macs") - _value(pair.a, "macs"))))
    plan_a, plan_b = comparison.a.plan, comparison.b.plan
    total = ("total", f"{plan_a.total_params:,}", f"{plan_b.total_params:,}",
             _signed(plan_b.total_params - plan_a.total_params), f"{plan_a.macs:,}", f"{plan_b.macs:,}",
             _signed(plan_b.macs - plan_a.macs))
    widths = [max(len(line[i]) for line in [header, *body, total]) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(b) for b in body), rule, line(total)])


def _signed(number: int) -> str:
    return "0" if number == 0 else f"{number:+,}"
