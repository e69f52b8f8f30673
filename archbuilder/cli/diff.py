"""`diff A.yaml B.yaml`: what differs between two specs, fields and per-stage cost. No TensorFlow."""

from __future__ import annotations

import json

import click

from archbuilder.errors import shown
from archbuilder.cli.options import PathOption, max_memory_option, overrides_option
from archbuilder import api
from archbuilder.plan import compare


@click.command("diff")
@click.argument("spec_a", metavar="A", type=PathOption(dir_okay=True, path_type=str))
@click.argument("spec_b", metavar="B", type=PathOption(dir_okay=True, path_type=str))
@overrides_option
@click.option("--set-a", "overrides_a", multiple=True, metavar="PATH=VALUE", help="Override a field of A only.")
@click.option("--set-b", "overrides_b", multiple=True, metavar="PATH=VALUE", help="Override a field of B only.")
@max_memory_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def command(spec_a: str, spec_b: str, overrides: tuple[str, ...], overrides_a: tuple[str, ...],
            overrides_b: tuple[str, ...], max_memory: int | None, as_json: bool) -> None:
    """Compare specs A and B, both fully resolved: the fields that differ, and per-stage params and MACs.

    --set applies to both sides (after each file's extends), --set-a / --set-b to one.
    """
    result = api.diff(spec_a, spec_b, overrides, overrides_a, overrides_b, max_memory)
    a, b = result.a, result.b
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    click.echo(f"A: {shown(spec_a)} ({a.spec.name})")
    click.echo(f"B: {shown(spec_b)} ({b.spec.name})")
    click.echo("")
    if result.fields:
        click.echo(f"Fields that differ ({len(result.fields)}):")
        width = max(len(change.path) for change in result.fields)
        for change in result.fields:
            click.echo(f"  {change.path.ljust(width)}  {_show(change.a)} -> {_show(change.b)}")
    else:
        click.echo("Fields that differ: none (the resolved specs are equal)")
    click.echo("")
    click.echo(compare.table(result))


def _show(value) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, list) and value and all(isinstance(item, dict) and "type" in item for item in value):
        # A layer list shown whole: its layer types read at a glance; --json has every field.
        return "[" + ", ".join(item["type"] for item in value) + "]"
    return json.dumps(value)
