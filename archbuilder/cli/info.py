"""`info SPEC`: per-stage output shapes, parameters and MACs, from static inference alone."""

from __future__ import annotations

import json

import click

from archbuilder.plan import report
from archbuilder.cli.options import max_memory_option, overrides_option, spec_argument
from archbuilder import api


@click.command("info")
@spec_argument
@overrides_option
@max_memory_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--blocks", "per_block", is_flag=True, help="One row per block instead of per stage.")
def command(spec: str, overrides: tuple[str, ...], max_memory: int | None, as_json: bool, per_block: bool) -> None:
    """Show SPEC's per-stage table and totals without building it."""
    checked = api.load_spec(spec, overrides, max_memory)
    if as_json:
        click.echo(json.dumps(api.info(checked, per_block=per_block), indent=2))
        return
    labels = checked.spec.stage_labels()
    table_rows = report.rows(checked.plan, labels, per_block=per_block)
    click.echo(f"{checked.spec.name}: input {list(checked.spec.input.shape)}")
    click.echo(report.table(table_rows))
    for line in report.totals_lines(checked.plan):
        click.echo(line)
    click.echo(f"Forward MACs: {checked.plan.macs:,}")
