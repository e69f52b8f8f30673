"""`export MODEL --format saved_model|litert|onnx`: a model file for other runtimes, checked there."""

from __future__ import annotations

from pathlib import Path

import click

from archbuilder.cli.options import PathOption, model_spec_options
from archbuilder.errors import shown
from archbuilder.export import FORMATS, QUANTIZATIONS


@click.command("export")
@click.argument("model_path", metavar="MODEL", type=PathOption(path_type=str))
@click.option("--format", "fmt", required=True, metavar="|".join(FORMATS), help="The export format.")
@click.option("--out", "out", type=PathOption(path_type=Path), default=None,
              help="Where to write (default: beside MODEL, e.g. best.tflite, best_saved_model/).")
@click.option("--quantize", default=None, metavar="|".join(QUANTIZATIONS),
              help="LiteRT only: float16 weights, or int8 weights and activations (needs --calibration).")
@click.option("--calibration", type=PathOption(path_type=Path), default=None,
              help="A folder of photos that sets int8's activation ranges (labels not needed).")
@click.option("--check", "check_data", default=None, metavar="DATA",
              help="Labelled images (a class folder or SIGNS HDF5), e.g. held-out photographers: "
              "report the export's accuracy next to Keras float32's.")
@model_spec_options
def command(model_path, fmt, out, quantize, calibration, check_data, spec, max_memory, overrides, strict):
    """Export MODEL (.keras, or .h5 with --spec) as a SavedModel, LiteRT or ONNX, and run it there.

    The export takes what the Keras model takes: float32 x/255 of images resized to the input
    size; class names and preprocessing are written inside it. After writing, the export is
    loaded in its own runtime and compared with Keras on --check images (or 8 seeded random inputs).
    """
    from archbuilder import api

    result = api.export(model_path, fmt, out, quantize=quantize, calibration=calibration, check=check_data,
                        spec=spec, overrides=overrides, strict=strict, max_memory=max_memory)
    click.echo(f"Exported {shown(result.path)} ({result.label}, {_size(result.size_bytes)})")
    click.echo(f"Checked in {result.runtime} on {result.checked_on}: max |p - p_keras| = {result.max_difference:.2e}")
    if result.keras_accuracy is not None:
        loss = round(100 * (result.keras_accuracy - result.export_accuracy), 6)  # 0.0, never -0.0
        click.echo(f"Accuracy on {result.checked_on}: Keras float32 {100 * result.keras_accuracy:.2f}%, "
                   f"{result.label} {100 * result.export_accuracy:.2f}% ({0.0 - loss:+.2f} points)")
    elif quantize and not result.outputs:  # --check measures a classifier's accuracy only
        click.echo("Accuracy not checked: give --check DATA (labelled held-out images) to compare with float32")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"
