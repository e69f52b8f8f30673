"""`build SPEC`: compile a spec into a Keras model, print its summary and save it."""

from __future__ import annotations

import os
from pathlib import Path

import click

from archbuilder.plan import report
from archbuilder.cli.options import PathOption, max_memory_option, overrides_option, spec_argument
from archbuilder.errors import UserError, shown
from archbuilder.output_paths import check_output_file, check_output_folder
from archbuilder import api


@click.command("build")
@spec_argument
@overrides_option
@max_memory_option
@click.option("--out", "out_dir", default="build", show_default=True, type=PathOption(file_okay=False, path_type=Path),
              help="Folder for <name>.keras.")
@click.option("--weights", "weights", type=PathOption(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Weights to load: a Keras 2 .h5 file (by layer name) or a Keras 3 .keras / .weights.h5 file (by structure).")
@click.option("--strict", is_flag=True, help="With --weights: any missing, extra or misshapen layer is an error.")
@click.option("--format", "formats", type=click.Choice(["keras", "h5", "both"]), default="keras", show_default=True,
              help="Save <name>.keras, Keras's legacy <name>.h5, or both.")
def command(spec: str, overrides: tuple[str, ...], max_memory: int | None, out_dir: Path, weights: Path | None,
            strict: bool, formats: str) -> None:
    """Build SPEC into a Keras model, print its summary and totals, save DIR/<name>.keras."""
    check_output_folder(out_dir)
    checked = api.load_spec(spec, overrides, max_memory)  # nothing is built unless this passes
    if strict and weights is None:
        raise UserError("--strict applies to --weights FILE, which was not given")
    outputs = [out_dir / f"{checked.spec.name}.{kind}" for kind in ("keras", "h5") if formats in (kind, "both")]
    for output in outputs:
        check_output_file(output)  # a folder of that name, say, before the build's seconds
    model = api.build(checked)
    _print_summary(model)
    _check_against_plan(model, checked.plan)
    for line in report.totals_lines(checked.plan):
        click.echo(line)
    if weights is not None:
        click.echo(api.load_weights(model, weights, strict=strict))
    for output in outputs:
        click.echo(f"Saved {shown(api.save(model, output))}")


def _print_summary(model) -> None:
    """Keras's summary with room for the 'Connected to' column.

    Keras renders the table with rich, which wraps at 80 columns when stdout is not a terminal
    (a pipe, a log file); COLUMNS is how both rich and shutil are told the width.
    """
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(max(int(previous) if previous and previous.isdigit() else 0, 124))
    try:
        model.summary(line_length=120, print_fn=lambda line, **_: click.echo(line))
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def _check_against_plan(model, plan) -> None:
    """Static inference and Keras must agree; a difference is a bug in archbuilder, said loudly."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = model.count_params()
    if (total, trainable) != (plan.total_params, plan.trainable_params):
        raise RuntimeError(
            f"internal error: Keras counts {total:,} params ({trainable:,} trainable) but static inference "
            f"counted {plan.total_params:,} ({plan.trainable_params:,}); please report this spec"
        )
