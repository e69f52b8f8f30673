"""`export MODEL --format saved_model|litert|onnx`: a model file for other runtimes, checked there."""

from __future__ import annotations

from pathlib import Path

import click

from archbuilder.cli.options import model_spec_options
from archbuilder.errors import UserError, shown
from archbuilder.export import FORMATS, QUANTIZATIONS

# A float32 export computes what Keras computes, op for op, in another kernel library: the
# probabilities differ by rounding (measured ~1e-7); 1e-4 is the bound, far above that.
FLOAT32_TOLERANCE = 1e-4
# int8 may cost at most this many points of accuracy against float32 before the command warns.
INT8_MAX_LOSS_POINTS = 1.0


@click.command("export")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=str))
@click.option("--format", "fmt", required=True, metavar="|".join(FORMATS), help="The export format.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Where to write (default: beside MODEL, e.g. best.tflite, best_saved_model/).")
@click.option("--quantize", default=None, metavar="|".join(QUANTIZATIONS),
              help="LiteRT only: float16 weights, or int8 weights and activations (needs --calibration).")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
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
    import numpy as np

    from archbuilder.export.calibration import calibration_inputs
    from archbuilder.export.formats import check_out, default_out, write_export
    from archbuilder.export.runtimes import open_exported
    from archbuilder.keras.model_files import (
        PREPROCESSING, model_classes, model_input_shape, open_model_file, read_model_metadata,
    )

    if fmt not in FORMATS:
        raise UserError(f"--format: unknown export format {fmt!r}; one of: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize: unknown quantization {quantize!r}; one of: {', '.join(QUANTIZATIONS)}")
    if quantize is not None and fmt != "litert":
        raise UserError(f"--quantize applies to --format litert (received: --format {fmt})")
    if quantize == "int8" and calibration is None:
        raise UserError("--quantize int8 needs --calibration FOLDER: photos like those the model will see")
    if calibration is not None and quantize != "int8":
        raise UserError("--calibration applies to --quantize int8")
    if not Path(model_path).exists():
        raise UserError(f"{shown(model_path)}: no such model file")
    out = out if out is not None else default_out(Path(model_path), fmt, quantize)
    check_out(out, fmt)
    model = open_model_file(model_path, spec, overrides, strict, on_report=lambda text: click.echo(text, err=True),
                            max_memory=max_memory)
    names = model_classes(model, model_path)
    shape = model_input_shape(model, model_path)
    calibration_x = calibration_inputs(calibration, shape) if calibration is not None else None
    check = None
    if check_data is not None:
        from archbuilder.data.sources import evaluation_data

        check = evaluation_data(check_data, shape, names)
    metadata = {**read_model_metadata(model_path), "class_names": list(names), "input_shape": list(shape),
                "preprocessing": PREPROCESSING, "input": "float32 x/255, shape (batch, height, width, channels)"}
    if quantize:
        metadata["quantization"] = quantize
    write_export(model, fmt, out, metadata, quantize, calibration_x)
    exported = open_exported(out)
    label = f"{exported.runtime}" + (f" {quantize}" if quantize else " float32")
    click.echo(f"Exported {shown(out)} ({label}, {_size(out)})")

    from archbuilder.training.metrics import predict_probabilities

    if check is not None:  # uint8 images through the x/255 of training, on both sides
        reference, probabilities = predict_probabilities(model, check.x), exported.predict_uint8(check.x)
        source = f"{len(check.x)} images of {check_data}"
    else:
        x = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
        reference, probabilities = np.asarray(model.predict_on_batch(x)), exported.predict(x)
        source = "8 seeded random inputs"
    difference = float(np.max(np.abs(probabilities - reference))) if len(reference) else 0.0
    click.echo(f"Checked in {exported.runtime} on {source}: max |p - p_keras| = {difference:.2e}")
    if quantize is None and difference > FLOAT32_TOLERANCE:
        click.echo(f"warning: the float32 export differs from Keras by {difference:.2e} (more than "
                   f"{FLOAT32_TOLERANCE:g}); please report this model", err=True)
    if check is not None:
        keras_accuracy = float(np.mean(np.argmax(reference, axis=1) == check.y))
        export_accuracy = float(np.mean(np.argmax(probabilities, axis=1) == check.y))
        loss = round(100 * (keras_accuracy - export_accuracy), 6)  # 0.0, never -0.0
        click.echo(f"Accuracy on {source}: Keras float32 {100 * keras_accuracy:.2f}%, "
                   f"{label} {100 * export_accuracy:.2f}% ({0.0 - loss:+.2f} points)")
        if quantize == "int8" and loss > INT8_MAX_LOSS_POINTS:
            click.echo(f"warning: int8 lost {loss:.2f} points of accuracy against float32 (more than "
                       f"{INT8_MAX_LOSS_POINTS:g}); use float16, or calibrate with more photos like these", err=True)
    elif quantize:
        click.echo("Accuracy not checked: give --check DATA (labelled held-out images) to compare with float32")


def _size(path: Path) -> str:
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"
