"""Training datasets' tf.data options (data/pipeline.py `_training_options`): no autotuning thread,
whose join when Keras deletes the training iterator kept `train` waiting up to half a minute after
its last epoch, and one thread per op inside the pipeline.

What is checked: training datasets (held and streamed) carry both options, inference and validation
datasets the first only (every dataset iterated: tests/test_dataset_options.py); the augmented
batches are the same pixels with the options as without; and with autotuning off a parallel map
still overlaps its calls and a prefetch still runs ahead of its consumer, so the pipelines lose
nothing. Overlap is read from when each call started and ended.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from archbuilder.data import pipeline
from archbuilder.spec.training import AugmentationSpec
from train_support import image_folder


@pytest.fixture(scope="module")
def held():
    x = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    return x, np.arange(12) % 3


@pytest.mark.parametrize("augmentation", [None, AugmentationSpec(horizontal_flip=True, rotation=0.1)])
def test_training_datasets_carry_both_options_and_inference_datasets_the_first(held, augmentation):
    x, y = held
    dataset = pipeline.training_dataset(x, y, 3, 4, seed=0, first_epoch=0, epochs=2, augmentation=augmentation)
    assert dataset.options().autotune.enabled is False
    assert dataset.options().threading.max_intra_op_parallelism == 1
    assert len(list(dataset)) == 6  # two epochs of three batches
    for other in (pipeline.inference_dataset(x, 4), pipeline.validation_dataset(x, y, 3, 4)):
        assert other.options().autotune.enabled is False
        assert other.options().threading.max_intra_op_parallelism != 1
    assert [len(labels) for _, labels in pipeline.validation_dataset(x, y, 3, 5)] == [5, 5, 2]


def test_the_options_leave_every_augmented_pixel_as_it_was(monkeypatch):
    """Every augmentation on (contrast takes a per-image mean: a reduction, split across threads by
    default), images large enough for TensorFlow to split each op."""
    x = np.random.default_rng(1).integers(0, 256, (16, 96, 96, 3), dtype=np.uint8)
    y = np.arange(16) % 4
    augmentation = AugmentationSpec(rotation=0.1, zoom=0.1, translation=0.1, contrast=0.3, brightness=0.2,
                                    horizontal_flip=True, vertical_flip=True)

    def batches():
        dataset = pipeline.training_dataset(x, y, 4, 8, seed=3, first_epoch=0, epochs=2, augmentation=augmentation)
        return [images.numpy() for images, _ in dataset]

    with_options = batches()
    monkeypatch.setattr(pipeline, "_training_options", lambda dataset: dataset)
    without = batches()
    assert len(with_options) == len(without) == 4
    for index, (a, b) in enumerate(zip(with_options, without)):
        np.testing.assert_array_equal(a, b, err_msg=f"batch {index}")


def test_streamed_training_datasets_carry_the_options(tmp_path):
    from archbuilder.data.folder import scan_image_folder
    from archbuilder.data.stream import ImageFiles, read_headers

    files = scan_image_folder(image_folder(tmp_path / "images", classes=("0", "1"), per_class=3))
    orientations, problems = read_headers(files.paths)
    assert problems == []
    stream = ImageFiles(files.paths, orientations, (8, 8, 3))
    dataset = pipeline.training_dataset(stream, np.asarray(files.labels), 2, 2, seed=0, first_epoch=0, epochs=1)
    assert dataset.options().autotune.enabled is False
    assert dataset.options().threading.max_intra_op_parallelism == 1
    assert sum(len(labels) for _, labels in dataset) == 6


def _recorded(dataset_of, calls: int):
    """Run a dataset whose elements each sleep 0.2 s in Python, recording (start, end) of each call."""
    import tensorflow as tf

    spans, lock = [], threading.Lock()

    def slow(index):
        start = time.monotonic()
        time.sleep(0.2)
        with lock:
            spans.append((start, time.monotonic()))
        return index

    def call(index):
        return tf.py_function(slow, [index], tf.int64)

    return dataset_of(tf.data.Dataset.range(calls), call), spans


def test_without_autotuning_a_parallel_map_still_overlaps_its_calls():
    import tensorflow as tf

    dataset, spans = _recorded(lambda d, call: d.map(call, num_parallel_calls=tf.data.AUTOTUNE), 6)
    assert len(list(pipeline._training_options(dataset))) == 6
    spans.sort()
    # Some call began before the one before it had ended: two ran at once. One call at a time
    # (no parallelism) would give every start after the previous end.
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans


def test_without_autotuning_prefetch_still_runs_ahead_of_its_consumer():
    import tensorflow as tf

    dataset, spans = _recorded(lambda d, call: d.map(call).prefetch(tf.data.AUTOTUNE), 4)
    consumed = []
    for _ in pipeline._training_options(dataset):
        time.sleep(0.5)  # the model's step: the next element should be produced meanwhile
        consumed.append(time.monotonic())
    spans.sort()
    # Element k+1 was started before element k was done with (its step ended): the producer ran
    # ahead. Without prefetching, each element would start only when the consumer asked for it.
    assert all(spans[k + 1][0] < consumed[k] - 0.25 for k in range(len(consumed) - 1)), (spans, consumed)
