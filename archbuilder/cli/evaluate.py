"""`evaluate MODEL --data ...`: loss, accuracy, per-class precision and recall, confusion matrix."""

from __future__ import annotations

import click

from archbuilder.spec.training import MAX_COUNT
from archbuilder.errors import shown
from archbuilder.cli.json_output import json_text
from archbuilder.cli.options import PathOption, classes_option, model_spec_options


@click.command("evaluate")
@click.argument("model_path", metavar="MODEL", type=PathOption(path_type=str))
@click.option("--data", required=True, help="Labelled images: a class folder or a SIGNS .h5 (test_set_* preferred).")
@click.option("--batch-size", type=click.IntRange(1, MAX_COUNT), default=64, show_default=True)
@classes_option("Evaluate only the images of these classes of DATA, e.g. 0,1 for a model of two classes.")
@model_spec_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(model_path, data, batch_size, classes, spec, max_memory, overrides, strict, as_json):
    """Evaluate MODEL (.keras, or a Keras 2 .h5 with --spec) on labelled images, preprocessed exactly as in training."""
    from archbuilder import api
    from archbuilder.training.metrics import Evaluation

    result = api.evaluate(model_path, data, batch_size=batch_size, classes=classes, spec=spec, overrides=overrides,
                          strict=strict, max_memory=max_memory)
    if as_json:
        click.echo(json_text(result, indent=2))
    else:
        click.echo(f"model: {shown(result['model'])}\ndata:  {shown(result['data'])}\n" + Evaluation.from_json(result).to_text())
