"""What `train` does after its last step (archbuilder/training/end_phases.py): timed and said, and
the best epoch's weights loaded from the extracted HDF5 file exactly as Keras loads the archive."""

from __future__ import annotations

import re

import numpy as np

from train_support import TINY_SPEC, image_folder, invoke

from archbuilder.training.end_phases import EndPhases, load_saved_weights  # noqa: I001

import keras  # noqa: E402


def _model():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="fc")(x))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def test_saved_weights_load_as_keras_loads_them(tmp_path):
    rng = np.random.default_rng(0)
    trained = _model()
    trained.train_on_batch(rng.normal(size=(4, 6, 6, 3)), keras.utils.to_categorical([0, 1, 0, 1], 2))
    trained.save(tmp_path / "best.keras")
    theirs, ours = _model(), _model()
    for model in (theirs, ours):  # optimizer slots exist, as in `train` after fit
        model.optimizer.build(model.trainable_variables)
    theirs.load_weights(tmp_path / "best.keras")
    load_saved_weights(ours, tmp_path / "best.keras")
    want = [v.numpy() for v in theirs.weights + theirs.optimizer.variables]
    have = [v.numpy() for v in ours.weights + ours.optimizer.variables]
    assert len(want) == len(have) and any(np.any(w != 0) for w in want[len(theirs.weights):])
    for w, h in zip(want, have):
        np.testing.assert_array_equal(h, w)
    assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), trained.get_weights()))
    assert not list(tmp_path.glob("archbuilder-weights-*"))  # nothing left beside the file


def test_phases_add_up_and_are_said():
    phases = EndPhases()
    with phases("a"):
        pass
    with phases("b"):
        pass
    line = phases.describe()
    assert re.fullmatch(r"after training: a \d+\.\d s, b \d+\.\d s \(\d+\.\d s\)", line), line
    assert set(phases.seconds) == {"a", "b"}


def test_train_says_its_end_phases(tmp_path):
    photos = image_folder(tmp_path / "images", per_class=6)
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    line = next(text for text in result.output.splitlines() if text.startswith("after training: "))
    assert re.fullmatch(r"after training: loading the best epoch's weights \d+\.\d s, predicting 18 images "
                        r"\d+\.\d s, metrics.json and the confusion matrix \d+\.\d s \(\d+\.\d s\)", line), line
    assert result.output.index("after training: ") < result.output.index("best epoch 1: ")
