"""`build SPEC`: compile a spec into a Keras model, print its summary and save it."""

from __future__ import annotations

from pathlib import Path

import click

from archbuilder import report
from archbuilder.cli.options import overrides_option, spec_argument
from archbuilder.validate import load_checked_spec


@click.command("build")
@spec_argument
@overrides_option
@click.option("--out", "out_dir", default="build", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <name>.keras.")
def command(spec: str, overrides: tuple[str, ...], out_dir: Path) -> None:
    """Build SPEC into a Keras model, print its summary and totals, save DIR/<name>.keras."""
    checked = load_checked_spec(spec, overrides)  # nothing is built unless this passes
    from archbuilder.atomic import atomic_path
    from archbuilder.keras_graph import build_model

    model = build_model(checked.spec, checked.plan)
    model.summary(line_length=110, print_fn=lambda line, **_: click.echo(line))
    _check_against_plan(model, checked.plan)
    for line in report.totals_lines(checked.plan):
        click.echo(line)
    target = out_dir / f"{checked.spec.name}.keras"
    with atomic_path(target) as tmp:
        model.save(tmp)
    click.echo(f"Saved {target}")


def _check_against_plan(model, plan) -> None:
    """Static inference and Keras must agree; a difference is a bug in archbuilder, said loudly."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = model.count_params()
    if (total, trainable) != (plan.total_params, plan.trainable_params):
        raise RuntimeError(
            f"internal error: Keras counts {total:,} params ({trainable:,} trainable) but static inference "
            f"counted {plan.total_params:,} ({plan.trainable_params:,}); please report this spec"
        )
