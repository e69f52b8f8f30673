"""Keras 3 model files loaded with `--weights`, their weights mapped onto a spec's model by structure.

The reference is keras.applications.ResNet50 (`weights=None`, seeded random weights, batch-norm
statistics randomized), saved with `model.save` as a user would. architectures/imagenet/
resnet50_keras.yaml names its layers differently from the file where Keras numbers them
(`conv2d_12`) and the tests also load it under the notebook's names, so nothing can pair by name.
The harness (tests/helpers/keras_reference.py) is the one the model-zoo tests use.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from archbuilder.errors import UserError
from archbuilder.keras.graph import build_model  # sets TensorFlow's environment first
from archbuilder.keras.model_files import open_model_file
from archbuilder.keras.weights import load_weights_file, open_weights_with_spec
from archbuilder.keras.weights_keras3 import read_keras3_file
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, run_cli_in_process
from tests.helpers.keras_reference import assert_predicts_as_reference, saved_reference, sign_photos

import keras  # noqa: E402

RESNET50_KERAS = REPO / "architectures" / "imagenet" / "resnet50_keras.yaml"
RESNET18 = REPO / "architectures" / "resnet18.yaml"
SIZE = 64  # the default suite's size: the mapping does not depend on it; the slow test runs 224


def keras_resnet50_file(folder, size: int):
    images = sign_photos(size)
    reference = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    path, expected = saved_reference(reference, folder, images, residual_gamma=lambda layer: layer.name.endswith("_3_bn"))
    return path, images, expected


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    return keras_resnet50_file(tmp_path_factory.mktemp("keras3"), SIZE)


@pytest.fixture(scope="module")
def loaded(resnet50_file):
    """The spec's ResNet-50 under the notebook's names (names play no part) with the file loaded."""
    overrides = [f"input.shape=[{SIZE},{SIZE},3]", "defaults.naming=notebook"]
    return open_weights_with_spec(resnet50_file[0], RESNET50_KERAS, overrides, strict=True)


def test_keras_resnet50_file_predicts_as_keras(resnet50_file, loaded):
    path, images, expected = resnet50_file
    model, report = loaded
    assert report.complete and len(report.matched) == 107  # 53 conv, 53 batch norm, 1 dense
    assert report.format().startswith(f"{path}: loaded weights for 107 of 107 layers by structure")
    assert_predicts_as_reference(model(images, training=False), expected)


def test_a_batch_norm_mixup_would_show(resnet50_file, loaded):
    # The comparison above is sensitive: one batch norm's statistics exchanged with its
    # neighbour's of the same width moves the predictions far beyond the tolerance.
    _, images, expected = resnet50_file
    model, _ = loaded
    first, second = model.get_layer("bn3b_branch2a"), model.get_layer("bn3c_branch2a")
    a, b = first.get_weights(), second.get_weights()
    first.set_weights(a[:2] + b[2:])
    second.set_weights(b[:2] + a[2:])
    try:
        got = np.asarray(model(images, training=False))
    finally:
        first.set_weights(a)
        second.set_weights(b)
    assert np.max(np.abs(got - expected) / expected) > 100 * 1e-5


def test_structure_mismatch_names_the_first_difference(resnet50_file):
    path, _, _ = resnet50_file
    model = build_model(load_checked_spec(RESNET18).spec)
    with pytest.raises(UserError) as caught:
        load_weights_file(model, path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: its structure differs from the spec's model")
    assert "weighted layer" in message


def test_other_class_count_loads_all_but_the_head_unless_strict(resnet50_file):
    # Through open_model_file, as `evaluate`/`predict MODEL.keras --spec SPEC` load it.
    path, images, _ = resnet50_file
    reports = []
    model = open_model_file(path, RESNET50_KERAS, [f"input.shape=[{SIZE},{SIZE},3]", "classes=10"],
                            on_report=reports.append)
    assert reports[0].splitlines() == [
        f"{path}: loaded weights for 106 of 107 layers by structure",
        "different shapes (1), left as initialized:",
        "  predictions (file: predictions): model expects [(2048, 10), (10,)], file has [(2048, 1000), (1000,)]",
    ]
    assert model(images[:1], training=False).shape == (1, 10)
    with pytest.raises(UserError, match="strict: the file does not fit the model; nothing was loaded"):
        load_weights_file(model, path, strict=True)


def test_bare_weights_file_in_keras_order(tmp_path):
    # A .weights.h5 has no graph: its layers pair in the order Keras wrote them, when that order
    # is the model's own (here: a model built from the same spec).
    spec = load_checked_spec(RESNET18).spec
    source, target = build_model(spec), build_model(spec)
    for variable in source.weights:
        variable.assign(np.random.default_rng(len(variable.path)).normal(size=variable.shape).astype("float32"))
    path = tmp_path / "resnet18.weights.h5"
    source.save_weights(path)
    report = load_weights_file(target, path, strict=True)
    assert report.complete and "by structure" in report.format()
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Renamed to a plain .h5, the file is still recognized by its Keras 3 layout, not read as Keras 2.
    renamed = tmp_path / "resnet18-renamed.h5"
    renamed.write_bytes(path.read_bytes())
    assert load_weights_file(build_model(spec), renamed, strict=True).complete


def test_bare_weights_file_in_another_order_is_refused(resnet50_file, loaded, tmp_path):
    # keras.applications lists ResNet-50's layers in another order than the spec's model does
    # (shortcut and main branch), so Keras's own pairing by class and order would mix them up.
    path, _, _ = resnet50_file
    weights = tmp_path / "ResNet50.weights.h5"
    with zipfile.ZipFile(path) as archive:
        weights.write_bytes(archive.read("model.weights.h5"))
    with pytest.raises(UserError, match=r"holds no graph to map by structure; save the whole model"):
        load_weights_file(loaded[0], weights)  # refused before anything is assigned


def test_lambda_in_the_file_is_never_run(tmp_path):
    marker = tmp_path / "lambda-ran"

    def leave_marker(x, marker=str(marker)):
        open(marker, "w").close()
        return x

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Lambda(leave_marker, name="code")(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    path = tmp_path / "with-lambda.keras"
    keras.Model(inputs, x).save(path)
    marker.unlink()  # building the model ran the lambda once, symbolically
    stored = read_keras3_file(path)
    assert [layer.shapes for layer in stored.layers] == [((3, 3, 3, 4), (4,))]
    with pytest.raises(UserError):
        load_weights_file(build_model(load_checked_spec(RESNET18).spec), path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"not a zip at all", "not a Keras 3 model file (a .keras file is a zip archive"),
        ("zip-without-config", "not a Keras 3 model file (its zip lacks config.json or model.weights.h5)"),
        ("config-not-json", "config.json is not valid JSON"),
        ("config-not-a-model", "not a Keras 3 functional or sequential model (its config is a 'Conv2D')"),
    ],
)
def test_files_that_are_not_keras3_models(tmp_path, content, expected):
    path = tmp_path / "bad.keras"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            if content != "zip-without-config":
                config = "{nope" if content == "config-not-json" else json.dumps({"class_name": "Conv2D", "config": {}})
                archive.writestr("config.json", config)
                archive.writestr("model.weights.h5", b"")
            archive.writestr("metadata.json", "{}")
    with pytest.raises(UserError) as caught:
        read_keras3_file(path)
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_refuses_a_file_of_another_structure(resnet50_file, tmp_path):
    bad = run_cli_in_process("build", str(RESNET18), "--weights", str(resnet50_file[0]), "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "its structure differs from the spec's model" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_cli_build_with_keras3_weights(resnet50_file, tmp_path):
    path, _, _ = resnet50_file
    done = run_cli_in_process("build", str(RESNET50_KERAS), "--set", f"input.shape=[{SIZE},{SIZE},3]", "--weights", str(path),
                              "--strict", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"{path}: loaded weights for 107 of 107 layers by structure" in done.stdout
    assert (tmp_path / "ResNet50_Keras.keras").is_file()


@pytest.mark.slow
def test_keras_resnet50_at_224_predicts_as_keras(tmp_path):
    path, images, expected = keras_resnet50_file(tmp_path, 224)
    model, report = open_weights_with_spec(path, RESNET50_KERAS, strict=True)
    assert report.complete
    assert_predicts_as_reference(model(images, training=False), expected)
