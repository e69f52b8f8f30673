"""`predict MODEL IMAGE...`: the class-probability vector and predicted class of each image."""

from __future__ import annotations

import json
from pathlib import Path

import click

from archbuilder.cli.options import model_spec_options
from archbuilder.errors import UserError, shown
from archbuilder.file_kinds import is_image


@click.command("predict")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=str))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=str))
@model_spec_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
def command(model_path, images, spec, max_memory, overrides, strict, as_json):
    """Predict the class of each IMAGE (a folder: every image file in it) with MODEL (.keras, a Keras 2
    .h5 with --spec, or an export: .tflite, .onnx or a SavedModel folder), preprocessed exactly as in training.

    Prints, as the notebook does, the vector [p(0), p(1), ...] and then the predicted class name.
    """
    import numpy as np

    from archbuilder.data.images import load_image_files
    from archbuilder.keras.model_files import model_classes, model_input_shape, open_model_file
    from archbuilder.training.metrics import predict_probabilities

    paths = _image_paths(images)
    from archbuilder.export.runtimes import export_kind, open_exported

    if export_kind(model_path) is not None:  # run in its own runtime, with the names stored inside it
        if spec is not None:
            raise UserError(f"{model_path}: --spec applies to Keras 2 .h5 files; an export carries its own architecture")
        exported = open_exported(model_path)
        names, shape = exported.class_names(), exported.input_shape
        probabilities = exported.predict_uint8(load_image_files(paths, shape))
    else:
        model = open_model_file(model_path, spec, overrides, strict, on_report=lambda text: click.echo(text, err=True),
                                max_memory=max_memory)
        names = model_classes(model, model_path)
        shape = model_input_shape(model, model_path)
        probabilities = predict_probabilities(model, load_image_files(paths, shape))
    for path, row in zip(paths, probabilities):
        if row.ndim > 1:  # a map per image (a U-Net's HxWxC): its shape and each class's share of pixels
            _show_map(path, row, names, as_json)
            continue
        best = int(np.argmax(row))
        if as_json:
            click.echo(json.dumps({
                "image": shown(path), "probabilities": dict(zip(names, map(float, row))),
                "class": names[best], "probability": float(row[best]),
            }))
            continue
        click.echo(shown(path))
        click.echo(f"class prediction vector [{', '.join(f'p({n})' for n in names)}] = ")
        with np.printoptions(precision=8):
            click.echo(str(row[None, :]))
        click.echo(f"predicted class: {names[best]} (p = {row[best]:.4f})")


def _show_map(path: Path, probabilities, names, as_json: bool) -> None:
    import numpy as np

    shape = list(probabilities.shape)
    counts = np.bincount(np.argmax(probabilities, axis=-1).ravel(), minlength=len(names))
    shares = {name: float(count) / counts.sum() for name, count in zip(names, counts)}
    if as_json:
        click.echo(json.dumps({"image": shown(path), "output_shape": shape, "pixel_share": shares}))
        return
    click.echo(shown(path))
    click.echo(f"output {'x'.join(map(str, shape))} (class probabilities per pixel); share of pixels per predicted class:")
    click.echo("  ".join(f"{name}: {share:.2%}" for name, share in shares.items()))


def _image_paths(arguments) -> list[Path]:
    """The image files named, a folder standing for the image files directly inside it."""
    paths: list[Path] = []
    for argument in map(Path, arguments):
        if argument.is_dir():
            inside = sorted(p for p in argument.iterdir() if p.is_file() and not p.name.startswith(".") and is_image(p))
            if not inside:
                raise UserError(f"{shown(argument)}: is a folder with no image files in it")
            paths.extend(inside)
        elif not argument.is_file():
            raise UserError(f"{shown(argument)}: no such image file")
        else:
            paths.append(argument)
    return paths
