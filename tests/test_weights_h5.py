"""Keras 2 `.h5` files, made by real Keras 2 (`tf_keras`), loaded by layer name into the spec's model.

The notebook ships a `ResNet50.h5` saved by Keras 2; these tests make files of both kinds the
same way, from the notebook's own ResNet-50 code, and check that the model built from
architectures/resnet50.yaml then predicts what Keras 2 predicts, on real hand-sign photos.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from archbuilder.errors import UserError
from archbuilder.keras.graph import build_model  # sets TensorFlow's environment before tf_keras
from archbuilder.plan.validate import load_checked_spec
from archbuilder.keras.weights import open_weights_with_spec
from archbuilder.keras.weights_h5 import load_h5_weights, read_h5_weights, save_h5
from train_support import REPO, IMAGES, run_cli_in_process
from tests.helpers.notebook_resnet import notebook_resnet50, randomize_weights

import keras  # noqa: E402
import tf_keras  # noqa: E402

RESNET50 = REPO / "architectures" / "resnet50.yaml"
TOLERANCE = 1e-5  # the bar; the two Kerases round batch norm differently (~4e-7 a layer)


def sign_images(count: int = 8) -> np.ndarray:
    """`count` photos spread over the digits, as the notebook feeds them: 64x64, x / 255."""
    from PIL import Image

    paths = sorted(IMAGES.glob("*/*.JPG"))
    assert len(paths) >= count, f"the shared dataset is missing: {IMAGES}"
    chosen = paths[:: len(paths) // count][:count]
    return np.stack([
        np.asarray(Image.open(p).convert("RGB").resize((64, 64)), dtype="float32") / 255.0 for p in chosen
    ])


@pytest.fixture(scope="module")
def keras2_resnet(tmp_path_factory):
    """The notebook's ResNet-50 in Keras 2 with non-trivial weights, saved both ways."""
    folder = tmp_path_factory.mktemp("keras2")
    images = sign_images()
    model = notebook_resnet50(tf_keras)
    randomize_weights(model, images, seed=7)
    expected = np.asarray(model(images, training=False))
    model.save(folder / "ResNet50.h5")  # whole model, as the notebook's file
    model.save_weights(folder / "ResNet50.weights-only.h5")
    return {"images": images, "expected": expected, "model": model,
            "whole": folder / "ResNet50.h5", "weights": folder / "ResNet50.weights-only.h5"}


@pytest.fixture(scope="module")
def loaded(keras2_resnet):
    """The spec's ResNet-50 with the whole-model file loaded, as the notebook's step does it."""
    return open_weights_with_spec(keras2_resnet["whole"], RESNET50, strict=True)


@pytest.fixture(scope="module")
def other_network_h5(tmp_path_factory):
    """A small, different Keras 2 network that shares two layer names with ResNet-50."""
    inputs = tf_keras.Input((64, 64, 3))
    x = tf_keras.layers.Conv2D(8, 3, name="conv1")(inputs)  # ResNet-50's conv1 is 7x7x3x64
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    x = tf_keras.layers.Dense(16, name="hidden")(x)
    x = tf_keras.layers.Dense(6, name="fc6")(x)  # fc6 in ResNet-50 takes 2048 inputs
    path = tmp_path_factory.mktemp("other") / "other.h5"
    tf_keras.Model(inputs, x).save(path)
    return path


def test_predictions_are_not_trivial(keras2_resnet):
    # If every image got the same, or a saturated, prediction, comparing them would prove little.
    expected = keras2_resnet["expected"]
    assert expected.max() < 0.95
    assert expected.std(axis=0).mean() > 0.03
    assert len({int(i) for i in expected.argmax(axis=1)}) >= 3


def test_whole_model_file_predicts_as_keras2(keras2_resnet, loaded):
    model, report = loaded
    assert report.complete
    assert len(report.matched) == 107  # 53 conv, 53 batch norm, fc6
    got = np.asarray(model(keras2_resnet["images"], training=False))
    np.testing.assert_allclose(got, keras2_resnet["expected"], rtol=0, atol=TOLERANCE)


def test_save_weights_file_predicts_as_keras2(keras2_resnet):
    model = build_model(load_checked_spec(RESNET50).spec)
    report = load_h5_weights(model, keras2_resnet["weights"], strict=True)
    assert len(report.matched) == 107
    got = np.asarray(model(keras2_resnet["images"], training=False))
    np.testing.assert_allclose(got, keras2_resnet["expected"], rtol=0, atol=TOLERANCE)


def test_batch_norm_weights_land_in_their_places(keras2_resnet, loaded):
    # gamma, beta, moving mean and moving variance all differ; a swap would show here.
    stored = dict(read_h5_weights(keras2_resnet["whole"])["bn3a_branch2b"])
    assert set(stored) == {"gamma", "beta", "moving_mean", "moving_variance"}
    model, _ = loaded
    layer = model.get_layer("bn3a_branch2b")
    for variable in layer.weights:
        np.testing.assert_array_equal(variable.numpy(), stored[variable.name])


def test_other_network_gives_a_mismatch_report(other_network_h5):
    model = build_model(load_checked_spec(RESNET50).spec)
    before = model.get_layer("conv1").get_weights()[0].copy()
    report = load_h5_weights(model, other_network_h5)
    assert not report.complete and report.matched == []
    assert [m.layer for m in report.shape_mismatches] == ["conv1", "fc6"]
    assert report.shape_mismatches[0].expected == ((7, 7, 3, 64), (64,))
    assert report.shape_mismatches[0].found == ((3, 3, 3, 8), (8,))
    assert report.not_in_model == ["hidden"]
    assert "bn_conv1" in report.missing_in_file and "res5c_branch2c" in report.missing_in_file
    text = report.format()
    assert "conv1: model expects [(7, 7, 3, 64), (64,)], file has [(3, 3, 3, 8), (8,)]" in text
    assert "hidden" in text and "res2a_branch2a" in text
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], before)  # left alone
    with pytest.raises(UserError, match="--strict"):
        load_h5_weights(model, other_network_h5, strict=True)


def test_lambda_layer_is_never_run(tmp_path):
    marker = tmp_path / "lambda-ran"

    def leave_marker(x, marker=str(marker)):  # a default, so Keras 2 stores the path in the file
        open(marker, "w").close()
        return x * 2.0

    inputs = tf_keras.Input((4,))
    x = tf_keras.layers.Dense(3, name="d1")(inputs)
    x = tf_keras.layers.Lambda(leave_marker, name="code")(x)
    x = tf_keras.layers.Dense(2, name="d2")(x)
    source = tf_keras.Model(inputs, x)
    path = tmp_path / "with-lambda.h5"
    source.save(path)
    marker.unlink()  # building the model ran the lambda once, symbolically

    inputs = keras.Input((4,))
    target = keras.Model(inputs, keras.layers.Dense(2, name="d2")(keras.layers.Dense(3, name="d1")(inputs)))
    report = load_h5_weights(target, path, strict=True)
    assert report.matched == ["d1", "d2"]
    for name in ("d1", "d2"):
        for got, want in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert not marker.exists()
    # The control: Keras 2's own loader does run the stored code.
    tf_keras.models.load_model(path, safe_mode=False)
    assert marker.exists()


def small_network(k):
    """Conv, batch norm and dense layers, named, in Keras module `k` (keras or tf_keras)."""
    inputs = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 3, name="conv")(inputs)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.Activation("relu")(x)
    x = k.layers.Flatten()(x)
    return k.Model(inputs, k.layers.Dense(3, activation="softmax", name="fc3")(x))


def test_save_h5_writes_what_keras2_and_we_read(tmp_path):
    source = small_network(keras)
    rng = np.random.default_rng(0)
    source.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in source.weights])
    path = save_h5(source, tmp_path / "small.h5")
    assert sorted(tmp_path.iterdir()) == [path]  # no temporary file left behind
    images = rng.uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    expected = np.asarray(source(images, training=False))

    keras2 = small_network(tf_keras)
    keras2.load_weights(path, by_name=True)
    # What the file must carry: every array, bit for bit.
    for theirs, ours in zip(keras2.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(theirs, ours)
    # The two Kerases then compute with other kernels (tf_keras uses fused batch norm; which
    # convolution kernel runs depends on the CPU). With these weights the logits are large
    # (~2e3), so their float32 rounding differs by up to ~n * 2**-24 of the sum of the dense
    # layer's |terms| (n = 144 inputs, plus the 27-term convolution before it), and a softmax
    # moves by at most half a logit's change.
    hidden = keras.Model(source.inputs, source.get_layer("fc3").input)(images, training=False)
    kernel, bias = (np.abs(w) for w in source.get_layer("fc3").get_weights())
    magnitude = float((np.abs(np.asarray(hidden)) @ kernel + bias).max())
    logit_bound = (144 + 27) * 2.0**-24 * magnitude
    np.testing.assert_allclose(np.asarray(keras2(images, training=False)), expected, rtol=0, atol=logit_bound / 2)
    again = small_network(keras)
    assert load_h5_weights(again, path, strict=True).matched == ["conv", "bn", "fc3"]
    np.testing.assert_array_equal(np.asarray(again(images, training=False)), expected)


def test_keras2_load_model_reads_our_h5_files(loaded, keras2_resnet, tmp_path):
    """Issue 13, item 10: `tf_keras.models.load_model` rebuilds what `--format h5` / `train --h5`
    write (both are save_h5): the architecture from the stored config, then the weights."""
    model, _ = loaded
    path = save_h5(model, tmp_path / "ResNet50.h5")
    rebuilt = tf_keras.models.load_model(path)
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    assert rebuilt.count_params() == 23_600_006  # the notebook's total (REFERENCE.md §2)
    predicted = np.asarray(rebuilt(keras2_resnet["images"], training=False))
    np.testing.assert_allclose(predicted, keras2_resnet["expected"], rtol=0, atol=TOLERANCE)
    again = keras.saving.load_model(path)  # and Keras 3 still reads the rewritten config
    np.testing.assert_allclose(np.asarray(again(keras2_resnet["images"], training=False)), keras2_resnet["expected"],
                               rtol=0, atol=TOLERANCE)


def test_build_h5_names_the_layers_keras2_cannot_rebuild(tmp_path):
    """ConvNeXt's layer scale and a tanh-GELU head have no Keras 2 form: `build --format h5` says
    so beside the file, and archbuilder still reads every layer's weights from it."""
    convnext = REPO / "tests" / "specs" / "tiny_convnext.yaml"
    built = run_cli_in_process("build", str(convnext), "--format", "h5", "--out", str(tmp_path / "convnext"))
    assert built.returncode == 0, built.stderr
    note = next(line for line in built.stderr.splitlines() if line.startswith("note:"))
    assert "LayerScale (layer_scale, layer_scale_1, layer_scale_2)" in note
    assert "the tanh form of GELU (pre_logits)" in note
    read = run_cli_in_process("build", str(convnext), "--weights", str(tmp_path / "convnext" / "tiny_convnext.h5"), "--strict",
                              "--out", str(tmp_path / "again"))
    assert read.returncode == 0, read.stderr
    assert re.search(r"loaded weights for (\d+) of \1 layers", read.stdout), read.stdout
    plain = run_cli_in_process("build", str(REPO / "tests" / "specs" / "tiny_train.yaml"), "--format", "h5",
                               "--out", str(tmp_path / "tiny"))
    assert plain.returncode == 0 and "note:" not in plain.stderr, plain.stderr


def test_not_a_keras_file_is_a_user_error(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        read_h5_weights(text)
    with pytest.raises(UserError, match="no such file"):
        read_h5_weights(tmp_path / "absent.h5")


@pytest.mark.slow
def test_build_cli_reports_and_strict_exits_2(other_network_h5, tmp_path):
    loose = run_cli_in_process("build", str(RESNET50), "--weights", str(other_network_h5), "--out", str(tmp_path))
    assert loose.returncode == 0, loose.stderr
    assert "loaded weights for 0 of 107 layers" in loose.stdout
    assert "conv1: model expects" in loose.stdout
    strict = run_cli_in_process("build", str(RESNET50), "--weights", str(other_network_h5), "--strict",
                                "--out", str(tmp_path / "strict"))
    assert strict.returncode == 2
    assert "--strict" in strict.stderr and "Traceback" not in strict.stderr
    assert not (tmp_path / "strict").exists()


@pytest.mark.slow  # ~10 s; by default test_keras2_load_model_reads_our_h5_files and test_whole_model_file_predicts_as_keras2
def test_predict_and_evaluate_read_a_keras2_file_with_spec(keras2_resnet, tmp_path):
    """The notebook's "load our trained model and evaluate it" step as single commands."""
    import json

    from click.testing import CliRunner

    from archbuilder.cli import main
    from archbuilder.data.images import load_image_files

    photos = [sorted((IMAGES / str(digit)).glob("*.JPG"))[0] for digit in range(6)]
    result = run_cli_in_process("predict", str(keras2_resnet["whole"]), *map(str, photos), "--spec", str(RESNET50), "--json")
    assert result.returncode == 0, result.stderr
    assert "loaded weights for 107 of 107 layers by name" in result.stderr
    ours = np.array([list(json.loads(line)["probabilities"].values()) for line in result.stdout.splitlines()])
    # The same preprocessing predict uses (decode, resize, x/255), fed to the Keras 2 model itself.
    x = load_image_files(photos, (64, 64, 3)).astype("float32") / 255.0
    expected = np.asarray(keras2_resnet["model"](x, training=False))
    np.testing.assert_allclose(ours, expected, atol=TOLERANCE, rtol=0)

    data = tmp_path / "signs"
    for digit, photo in enumerate(photos):
        (data / str(digit)).mkdir(parents=True)
        (data / str(digit) / photo.name).symlink_to(photo)
    evaluated = CliRunner().invoke(main, ["evaluate", str(keras2_resnet["weights"]), "--spec", str(RESNET50),
                                          "--data", str(data), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["accuracy"] == pytest.approx(np.mean(np.argmax(expected, axis=1) == np.arange(6)))

    without_spec = run_cli_in_process("predict", str(keras2_resnet["whole"]), str(photos[0]))
    assert without_spec.returncode == 2 and "give the architecture with --spec" in without_spec.stderr
