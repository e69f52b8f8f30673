"""`predict MODEL IMAGE...`: the class-probability vector and predicted class of each image."""

from __future__ import annotations

import click

from archbuilder.cli.json_output import json_text
from archbuilder.cli.options import PathOption, model_spec_options


@click.command("predict")
@click.argument("model_path", metavar="MODEL", type=PathOption(path_type=str))
@click.argument("images", nargs=-1, required=True, type=PathOption(path_type=str))
@model_spec_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
def command(model_path, images, spec, max_memory, overrides, strict, as_json):
    """Predict the class of each IMAGE (a folder: every image file in it) with MODEL (.keras, a Keras 2
    .h5 with --spec, or an export: .tflite, .onnx or a SavedModel folder), preprocessed exactly as in training.

    Prints, as the notebook does, the vector [p(0), p(1), ...] and then the predicted class name; a
    model with named outputs prints each output's values (all of them with --json).
    """
    import numpy as np

    from archbuilder import api
    from archbuilder.errors import shown

    result = api.predict(model_path, list(images), spec=spec, overrides=overrides, strict=strict, max_memory=max_memory)
    names = result.class_names
    rows = result.probabilities if result.outputs is None else [None] * len(result.inputs)
    for index, (path, row, facts) in enumerate(zip(result.inputs, rows, result.rows())):
        if as_json:
            click.echo(json_text(facts))
            continue
        click.echo(shown(path))
        if result.outputs is not None:  # named outputs: each one's raw values, summarized as numpy prints them
            for name, values in result.outputs.items():
                click.echo(f"output {name} {'x'.join(map(str, values.shape[1:]))}:")
                with np.printoptions(precision=6, threshold=20, edgeitems=2):
                    click.echo(str(values[index]))
            continue
        if "pixel_share" in facts:  # a map per image (a U-Net's H x W x classes)
            click.echo(f"output {'x'.join(map(str, facts['output_shape']))} (class probabilities per pixel); "
                       "share of pixels per predicted class:")
            click.echo("  ".join(f"{name}: {share:.2%}" for name, share in facts["pixel_share"].items()))
            continue
        click.echo(f"class prediction vector [{', '.join(f'p({n})' for n in names)}] = ")
        with np.printoptions(precision=8):
            click.echo(str(row[None, :]))
        click.echo(f"predicted class: {facts['class']} (p = {facts['probability']:.4f})")
