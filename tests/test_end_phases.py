"""What `train` does after its last step (archbuilder/training/end_phases.py): timed and said, and
the best epoch's weights loaded from the extracted HDF5 file exactly as Keras loads the archive."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from train_support import IMAGES, TINY_SPEC, callback_session, image_folder, invoke

from archbuilder.data.sources import training_data
from archbuilder.training.end_phases import TRAINING_SAMPLE, EndPhases, evaluation_images, load_saved_weights  # noqa: I001

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
    # One epoch: the best is the last one saved, whose weights the model holds; nothing to reload.
    assert re.fullmatch(r"after training: predicting 18 images "
                        r"\d+\.\d s, metrics.json and the confusion matrix \d+\.\d s \(\d+\.\d s\)", line), line
    assert result.output.index("after training: ") < result.output.index("best epoch 1: ")


def test_the_model_holds_the_saved_epoch_until_a_step_begins(tmp_path):
    """Session.weights_saved_at, which lets the end of a run skip reloading the best epoch: it names
    an epoch only while the model's weights are exactly that epoch's checkpoint. Real fit, real
    callbacks: two whole epochs, then a third cut short by Ctrl-C after two of its three steps."""
    import keras

    session, model, x, y, run_callbacks = callback_session(tmp_path, epochs=3)
    run = session.run
    seen = []

    class Watch(keras.callbacks.Callback):  # after the run's callbacks: what they left at each point
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(("begin", session.weights_saved_at))
            if session.epoch_number() == 3 and batch == 1:  # what train's SIGINT handler does
                session.stop_requested = True

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("end", session.weights_saved_at))

    fit = dict(batch_size=4, verbose=0, shuffle=False)
    model.fit(x, y, epochs=2, callbacks=[*run_callbacks, Watch()], **fit)
    assert seen == [("begin", None)] * 3 + [("end", 1)] + [("begin", None)] * 3 + [("end", 2)]
    assert session.weights_saved_at == 2 == session.state.epochs_done
    saved = keras.saving.load_model(run.checkpoints / "epoch-0002.keras", compile=False)
    for have, want in zip(model.weights, saved.weights, strict=True):  # bit for bit: what the end uses
        np.testing.assert_array_equal(have.numpy(), want.numpy())

    seen.clear()
    model.fit(x, y, initial_epoch=2, epochs=3, callbacks=[*run_callbacks, Watch()], **fit)
    assert session.epoch_cut_short and session.state.epochs_done == 2  # the third epoch is not kept
    assert session.weights_saved_at is None  # two steps changed the weights after epoch 2's save
    assert any(np.any(have.numpy() != want.numpy()) for have, want in zip(model.weights, saved.weights))


def test_without_held_out_images_the_end_predicts_a_fixed_sample_of_the_training_images():
    """Issue 21 item 3: the end of a run is bounded whatever the data's size. The 1,762 sign photos,
    streamed (nothing decoded), stand for a large training set with no test set or split."""
    streamed = training_data(str(IMAGES), None, (16, 16, 3), cache="none").train
    data = SimpleNamespace(train=streamed, validation=None, test=None, test_origin=None)
    images, origin = evaluation_images(data)
    assert len(streamed.y) == 1762 > TRAINING_SAMPLE == len(images.y) == len(images.x)
    assert origin == "1,000 of the 1,762 training images, drawn at random (no test set or validation split given)"
    paths = list(streamed.x.paths)
    picked = [paths.index(path) for path in images.x.paths]
    assert picked == sorted(set(picked))  # distinct files, in the data's order (streamed reads go forward)
    np.testing.assert_array_equal(images.y, streamed.y[picked])  # each file keeps its label
    assert len(set(images.y.tolist())) == 10  # every class is in a random 1,000 of 10 classes of ~176
    again, _ = evaluation_images(data)
    assert list(again.x.paths) == list(images.x.paths)  # the same sample every run: runs compare on it
    small = streamed.subset(np.arange(0, 1762, 100))
    images, origin = evaluation_images(SimpleNamespace(train=small, validation=None, test=None, test_origin=None))
    assert origin == "training images (no test set or validation split given)" and len(images.y) == 18
    test = SimpleNamespace(train=streamed, validation=small, test=small, test_origin="photos/")
    assert evaluation_images(test)[1] == "test set: photos/"  # a given test set is predicted whole, and first
    test.test = None
    assert evaluation_images(test)[1] == "validation split (no test set given)"
