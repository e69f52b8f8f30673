"""Every tf.data pipeline archbuilder iterates runs without tf.data's autotuning thread
(data/dataset_options.py): deleting an iterator joined that thread and waited out its sleep, up to
as long again as the iterator had lived, with both cores idle (a test-set prediction, a load of
photos, `fit`'s validation and training iterators).

Each check runs real commands in this process with `tf.data.Dataset.__iter__` wrapped to record
the options of every dataset iterated (our loops and `fit`'s own iterators both go through it), and
fails naming the code that iterated a dataset with autotuning still on. It also checks that the
iterations it expects happened, so that a path that stopped iterating cannot pass unseen.
"""

from __future__ import annotations

import traceback

import pytest

from train_support import TINY_SPEC, image_folder, invoke


@pytest.fixture
def iterated(monkeypatch):
    """(autotune.enabled, the Python stack) of every dataset iterated while the test runs."""
    import tensorflow as tf

    seen = []
    original = tf.data.Dataset.__iter__

    def recording(self):
        stack = "".join(traceback.format_stack(limit=12)[:-1])
        seen.append((self.options().autotune.enabled, stack))
        return original(self)

    monkeypatch.setattr(tf.data.Dataset, "__iter__", recording)
    return seen


def _check(seen, expected_callers):
    autotuned = [stack for enabled, stack in seen if enabled is not False]
    assert not autotuned, "iterated with tf.data's autotuning on:\n" + "\n---\n".join(autotuned)
    stacks = "\n".join(stack for _, stack in seen)
    missing = [name for name in expected_callers if f"in {name}\n" not in stacks]
    assert not missing, f"no dataset iterated from {missing}; iterated from:\n{stacks}"


def test_held_images_train_validate_test_and_evaluate_without_the_thread(tmp_path, iterated):
    photos = image_folder(tmp_path / "photos", per_class=8)
    test = image_folder(tmp_path / "test", per_class=2)
    result = invoke("train", TINY_SPEC, "--data", photos, "--test", test, "--epochs", "2", "--quiet",
                    "--set", "training.validation_split=0.25", "--set", "training.batch_norm_recompute_batches=1",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", tmp_path / "run" / "best.keras", "--data", test)
    assert result.exit_code == 0, result.output
    # load_image_files: the photos decoded; predict_probabilities: the test set after each epoch
    # and the evaluation; Keras's epoch iterator: fit's training and validation iterators; the
    # batch-norm recompute's batches, at each epoch's end.
    _check(iterated, ["load_image_files", "predict_probabilities", "_enumerate_iterator", "on_epoch_end"])


def test_streamed_cached_and_record_images_without_the_thread(tmp_path, iterated):
    photos = image_folder(tmp_path / "photos", per_class=6)
    env = {"ARCHBUILDER_CACHE_DIR": str(tmp_path / "cache")}
    # Decoded once into the disk cache, then streamed from it (--cache none streams the same way,
    # from the files themselves: ImageFiles.batches either way).
    result = invoke("train", TINY_SPEC, "--data", photos, "--epochs", "1", "--cache", "disk", "--quiet",
                    "--out", tmp_path / "run", env=env)
    assert result.exit_code == 0, result.output
    result = invoke("data", "pack", photos, tmp_path / "records", "--format", "tfrecord")
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", tmp_path / "run" / "best.keras", "--data", tmp_path / "records")
    assert result.exit_code == 0, result.output
    # ImageFiles.batches under all of them: the disk cache's build, fit's iterator over the cached
    # files, the records decoded for the evaluation.
    _check(iterated, ["_enumerate_iterator", "_build", "__array__"])
