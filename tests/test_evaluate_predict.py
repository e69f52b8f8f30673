"""`evaluate` and `predict` on real JPEGs with a freshly trained tiny model; bad models and images."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

from train_support import IMAGES, TINY_SPEC, image_folder, invoke, run_cli_in_process


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    photos = image_folder(root / "images", per_class=20)
    result = invoke("train", TINY_SPEC, "--data", photos, "--epochs", "2", "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return root / "run" / "best.keras", photos


def test_evaluate_prints_loss_accuracy_per_class_and_confusion(trained):
    model, photos = trained
    result = invoke("evaluate", model, "--data", photos)
    assert result.exit_code == 0, result.output
    for needle in ("images:   60", "loss:", "accuracy:", "precision  recall  support", "confusion matrix"):
        assert needle in result.output
    report = json.loads(invoke("evaluate", model, "--data", photos, "--json").output)
    assert report["images"] == 60 and [c["class"] for c in report["per_class"]] == ["0", "1", "2"]
    confusion = np.asarray(report["confusion_matrix"])
    assert confusion.sum() == 60 and list(confusion.sum(axis=1)) == [20, 20, 20]
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 60)


def test_evaluate_accepts_the_packed_hdf5_of_the_same_images(trained, tmp_path):
    model, photos = trained
    assert invoke("data", "pack", photos, tmp_path / "s.h5", "--size", "32", "--split", "test").exit_code == 0
    from_h5 = json.loads(invoke("evaluate", model, "--data", tmp_path / "s.h5", "--json").output)
    from_jpeg = json.loads(invoke("evaluate", model, "--data", photos, "--json").output)
    assert from_h5["confusion_matrix"] == from_jpeg["confusion_matrix"]  # same preprocessing


def test_predict_prints_the_probability_vector_and_class_name(trained):
    model, _ = trained
    image = sorted((IMAGES / "2").iterdir())[0]
    result = invoke("predict", model, image)
    assert result.exit_code == 0, result.output
    assert "class prediction vector [p(0), p(1), p(2)] = " in result.output
    vector = re.search(r"\[\[([^\]]*)\]\]", result.output).group(1)
    assert sum(float(v) for v in vector.split()) == pytest.approx(1.0, abs=1e-5)
    assert re.search(r"predicted class: [012] \(p = ", result.output)
    line = json.loads(invoke("predict", model, image, "--json").output.splitlines()[0])
    assert set(line["probabilities"]) == {"0", "1", "2"} and line["class"] in "012"


def test_predict_matches_evaluate_preprocessing(trained):
    # in this process: test_portable_files.py's predict runs in a real one and is compared the same way
    model, photos = trained
    image = sorted((photos / "1").iterdir())[0]
    result = run_cli_in_process("predict", model, image, "--json")
    assert result.returncode == 0, result.stderr
    from archbuilder.data.images import load_image_files
    from archbuilder.keras.model_files import open_model_file

    x = load_image_files([image], (32, 32, 3)).astype(np.float32) / 255.0
    expected = open_model_file(model).predict_on_batch(x)[0]
    got = json.loads(result.stdout)["probabilities"]
    assert [got[k] for k in "012"] == pytest.approx(expected.tolist(), abs=1e-5)


def _lambda_model(path):
    import keras

    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(path)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, m: d / "missing.keras", "no such model file"),
        (lambda d, m: _write(d / "text.keras", b"hello"), "not a Keras model file"),
        (lambda d, m: _write(d / "cut.keras", m.read_bytes()[:5000]), "not a Keras model file"),
        (lambda d, m: _zip(d / "other.keras"), "not a loadable Keras model"),
        (lambda d, m: _lambda_model(d / "lambda.keras"), "contains a Lambda layer"),
        (lambda d, m: d, "is a folder"),
    ],
    ids=["missing", "text", "truncated", "zip-not-model", "lambda", "folder"],
)
def test_files_that_are_not_models_are_refused(trained, tmp_path, make, message):
    model, photos = trained
    result = invoke("evaluate", make(tmp_path, model), "--data", photos)
    assert result.exit_code == 2 and message in result.output


def test_images_the_model_cannot_take_are_named(trained, tmp_path):
    model, _ = trained
    fake = _write(tmp_path / "photo.jpg", b"not a picture")
    result = invoke("predict", model, fake)
    assert result.exit_code == 2 and "photo.jpg: not a readable image" in result.output
    result = invoke("predict", model, tmp_path / "nothere.png")
    assert result.exit_code == 2 and "nothere.png: no such image file" in result.output
    result = invoke("predict", model, "/dev/null")  # there, but no file to read (it said "no such image file")
    assert result.exit_code == 2 and "/dev/null: not an image file (a character device)" in result.output


def test_evaluate_refuses_classes_the_model_does_not_know(trained, tmp_path):
    model, _ = trained
    other = image_folder(tmp_path / "other", classes=("0", "7"), per_class=2)
    result = invoke("evaluate", model, "--data", other)
    assert result.exit_code == 2 and "class '7' is not one of the model's classes" in result.output


def test_class_names_travel_inside_the_model_file(trained):
    model, _ = trained
    with zipfile.ZipFile(model) as archive:
        metadata = json.loads(archive.read("archbuilder.json"))
    assert metadata["class_names"] == ["0", "1", "2"] and metadata["input_shape"] == [32, 32, 3]


def _write(path, data):
    path.write_bytes(data)
    return path


def _zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    return path
