"""`validate SPEC...`: schema and shape checks only. Never imports TensorFlow."""

from __future__ import annotations

import click

from archbuilder.cli.options import PathOption, max_memory_option, overrides_option
from archbuilder.cli.remedies import problem_text
from archbuilder.errors import SpecError, UserError, shown
from archbuilder import api


@click.command("validate")
@click.argument("specs", nargs=-1, required=True, type=PathOption(path_type=str))
@overrides_option
@max_memory_option
def command(specs: tuple[str, ...], overrides: tuple[str, ...], max_memory: int | None) -> None:
    """Check SPEC files against the schema and infer their shapes; exit 2 if any is invalid."""
    problems: list[str] = []
    for path in specs:
        try:
            checked = api.load_spec(path, overrides, max_memory)
        except SpecError as error:
            problems.extend(problem_text(p) for p in error.problems)
            continue
        plan = checked.plan
        click.echo(f"ok: {shown(path)}: {checked.spec.name}, {plan.total_params:,} params, {plan.macs:,} MACs")
    if problems:
        raise UserError("\n".join(problems))
