"""`evaluate MODEL --data ...`: loss, accuracy, per-class precision and recall, confusion matrix."""

from __future__ import annotations

import json

import click

from archbuilder.cli.options import classes_option, model_spec_options


@click.command("evaluate")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=str))
@click.option("--data", required=True, help="Labelled images: a class folder or a SIGNS .h5 (test_set_* preferred).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@classes_option("Evaluate only the images of these classes of DATA, e.g. 0,1 for a model of two classes.")
@model_spec_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(model_path, data, batch_size, classes, spec, max_memory, overrides, strict, as_json):
    """Evaluate MODEL (.keras, or a Keras 2 .h5 with --spec) on labelled images, preprocessed exactly as in training."""
    from archbuilder.data.sources import evaluation_data
    from archbuilder.keras.model_files import model_classes, model_input_shape, open_model_file
    from archbuilder.training.head_output import check_one_vector_per_image, per_image_output
    from archbuilder.training.metrics import evaluate_probabilities, predict_probabilities

    model = open_model_file(model_path, spec, overrides, strict, on_report=lambda text: click.echo(text, err=True),
                            max_memory=max_memory)
    check_one_vector_per_image(per_image_output(model), model_path)  # a classifier's, before reading data
    names = model_classes(model, model_path)
    images = evaluation_data(data, model_input_shape(model, model_path), names, classes=classes)
    result = evaluate_probabilities(predict_probabilities(model, images.x, batch_size), images.y, names)
    if as_json:
        click.echo(json.dumps({"model": model_path, "data": data, **result.to_json()}, indent=2))
    else:
        click.echo(f"model: {model_path}\ndata:  {data}\n" + result.to_text())
