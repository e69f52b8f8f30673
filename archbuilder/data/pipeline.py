"""tf.data pipelines over decoded uint8 images (images.py): shuffle, batch, augment, x/255, prefetch.

`x` is either the decoded images held in memory as one uint8 array (every epoch after the first
decode costs only a gather), or a `stream.ImageFiles`, whose batches are decoded from their files
as they are needed (memory bounded whatever the data's size). Either way the order of epoch `e` is
a permutation drawn from (seed, e) alone, so a run resumed at epoch `e` sees exactly the batches it
would have seen, and the same batches whether the images are held or streamed.
"""

from __future__ import annotations

import math

import numpy as np

from archbuilder.data.dataset_options import without_autotuning
from archbuilder.spec.training import AugmentationSpec


def normalize(x):
    """The notebook's preprocessing, `x / 255.`, used identically for training and prediction."""
    import tensorflow as tf

    return tf.cast(x, tf.float32) / 255.0


def augmentation_layers(spec: AugmentationSpec, seed: int):
    """A keras.Sequential of random layers on 0-255 float images, or None when all are off.

    Training draws their random numbers per example (data.augment), not from their seed
    generators, whose state advances in whatever order tf.data calls them. They compute in
    float32 whatever `training.precision` is: they change the input pipeline's float32 images,
    not the model. (Under a mixed_bfloat16 global policy Keras builds them in bfloat16, and
    RandomContrast then multiplied its bfloat16 mean by a float32 factor and failed.)
    """
    import keras

    def seed_for(layer: int) -> int:  # one seed per layer, each a valid 32-bit seed
        return (seed + layer) % 2**31

    common = {"dtype": "float32"}
    layers = []
    if spec.horizontal_flip or spec.vertical_flip:
        mode = "horizontal_and_vertical" if spec.horizontal_flip and spec.vertical_flip else (
            "horizontal" if spec.horizontal_flip else "vertical")
        layers.append(keras.layers.RandomFlip(mode, seed=seed_for(0), **common))
    if spec.rotation:
        layers.append(keras.layers.RandomRotation(spec.rotation, fill_mode="reflect", seed=seed_for(1), **common))
    if spec.zoom:
        layers.append(keras.layers.RandomZoom(spec.zoom, fill_mode="reflect", seed=seed_for(2), **common))
    if spec.translation:
        layers.append(keras.layers.RandomTranslation(spec.translation, spec.translation, fill_mode="reflect",
                                                     seed=seed_for(3), **common))
    if spec.contrast:
        layers.append(keras.layers.RandomContrast(spec.contrast, seed=seed_for(4), **common))
    if spec.brightness:
        layers.append(keras.layers.RandomBrightness(spec.brightness, value_range=(0, 255), seed=seed_for(5), **common))
    return keras.Sequential(layers, name="augmentation") if layers else None


def steps_per_epoch(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size)


def training_dataset(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    augmentation: AugmentationSpec | None = None,
):
    """Batches of (x/255, one-hot y) for epochs first_epoch..epochs-1, back to back."""
    indexes = _batch_indexes(len(y), batch_size, seed, first_epoch, epochs)
    return _images_and_labels(indexes, x, y, classes, seed, augmentation,
                              epochs=(first_epoch, steps_per_epoch(len(y), batch_size)))


def replica_training_dataset(
    context,
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    augmentation: AugmentationSpec | None = None,
):
    """This worker's shard of `training_dataset`, for `strategy.distribute_datasets_from_function`.

    `batch_size` is the global batch: each global batch is the one `training_dataset` gives, cut
    into one contiguous slice per replica (as even as possible). A worker's dataset holds, for every
    global batch, the slices of its own replicas in order, which tf.distribute hands to its local
    devices in turn; so every worker runs the same number of steps, and one step of all replicas
    together sees exactly the single-device batch.
    """
    indexes = _batch_indexes(len(y), batch_size, seed, first_epoch, epochs)
    local = context.num_replicas_in_sync // context.num_input_pipelines  # slices per global batch
    return _images_and_labels(_replica_slices(indexes, context), x, y, classes, seed, augmentation,
                              epochs=(first_epoch, steps_per_epoch(len(y), batch_size) * local))


def replica_inference_dataset(context, x: np.ndarray, y: np.ndarray, classes: int, batch_size: int):
    """(x/255, one-hot y) in order, each global batch cut into per-replica slices (validation)."""
    import tensorflow as tf

    indexes = tf.data.Dataset.range(len(y)).batch(batch_size)
    return _images_and_labels(_replica_slices(indexes, context), x, y, classes, 0, None)


def _batch_indexes(count: int, batch_size: int, seed: int, first_epoch: int, epochs: int):
    """The image indexes of each batch; the order of epoch `e` depends only on (seed, e)."""
    import tensorflow as tf

    def epoch_order(epoch):
        keys = tf.random.stateless_uniform([count], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size)

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_order)


def _replica_slices(indexes, context):
    """Each batch of indexes as this input pipeline's replicas' slices, one element per replica."""
    import tensorflow as tf

    replicas = context.num_replicas_in_sync
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local

    def slices(batch):
        size = tf.cast(tf.shape(batch)[0], tf.int64)
        bounds = tf.range(replicas + 1, dtype=tf.int64) * size // replicas
        return tf.data.Dataset.range(first, first + local).map(lambda r: batch[bounds[r]:bounds[r + 1]])

    return indexes.flat_map(slices)


def _images_and_labels(indexes, x, y: np.ndarray, classes: int, seed: int,
                       augmentation: AugmentationSpec | None, epochs: tuple[int, int] | None = None):
    """`epochs`: (first epoch, index batches per epoch) of a training dataset; None for inference."""
    import tensorflow as tf

    from archbuilder.data.augment import StatelessAugmentation
    from archbuilder.data.stream import PREFETCH_BATCHES, ImageFiles

    labels = tf.one_hot(tf.constant(y), classes)
    streamed = isinstance(x, ImageFiles)
    augment = epochs is not None and augmentation is not None and augmentation.enabled
    first_epoch, per_epoch = epochs or (0, 0)
    if streamed:
        dataset = x.batches(indexes, labels, training=epochs is not None, first_epoch=first_epoch, per_epoch=per_epoch,
                            keyed=augment)
    elif augment:
        images = tf.constant(x)
        dataset = indexes.enumerate().map(lambda k, idx: (
            tf.gather(images, idx), tf.gather(labels, idx),
            (tf.fill(tf.shape(idx), first_epoch + k // per_epoch), tf.cast(idx, tf.int64))))
    else:
        images = tf.constant(x)
        dataset = indexes.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))
    if augment:
        # Each example's change from (seed, epoch, its index) alone (data.augment), so parallel
        # calls in any order, and a resumed run, give the same batches.
        layers = StatelessAugmentation(augmentation, seed)
        dataset = dataset.map(
            lambda im, lab, key: (layers(tf.cast(im, tf.float32), *key), lab),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.map(lambda im, lab: (normalize(im), lab))
    # Streamed: a fixed depth, so that memory stays bounded (AUTOTUNE may buffer up to half the RAM).
    dataset = dataset.prefetch(PREFETCH_BATCHES if streamed else tf.data.AUTOTUNE)
    return without_autotuning(dataset) if epochs is None else _training_options(dataset)


def _training_options(dataset):
    """`dataset` without tf.data's autotuning thread (data/dataset_options.py: its join kept `train`
    waiting up to half a minute after the last epoch), and with one thread per op inside it.

    One thread per op: the pipeline already runs several batches at once (the augmentation's
    parallel map, the streams' PARALLEL_BATCHES), so splitting each resampling or decode across
    the cores as well only adds hand-offs. The same pixels either way (tested); against autotuning
    off alone, the pipeline alone ran faster in 6 of 8 A/Bs, median +5% (two at -6% and -9%: this
    machine's noise is about that size; bench/pipeline_options.py, figures in bench/RESULTS.md).
    """
    return without_autotuning(dataset, one_thread_per_op=True)


def inference_dataset(x, batch_size: int):
    """Batches of x/255 in order; `x` a uint8 array or a stream.ImageFiles."""
    import tensorflow as tf

    from archbuilder.data.stream import PREFETCH_BATCHES, ImageFiles

    if isinstance(x, ImageFiles):
        batches = x.batches(tf.data.Dataset.range(len(x)).batch(batch_size))
        return batches.map(normalize).prefetch(PREFETCH_BATCHES)  # without autotuning: ImageFiles.batches'
    batches = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
    return without_autotuning(batches.map(normalize).prefetch(tf.data.AUTOTUNE))


def validation_dataset(x, y: np.ndarray, classes: int, batch_size: int):
    """(x/255, one-hot y) batches in order: `fit`'s validation data (one iterator per epoch)."""
    import tensorflow as tf

    labels = tf.data.Dataset.from_tensor_slices(tf.one_hot(y, classes)).batch(batch_size)
    return tf.data.Dataset.zip((inference_dataset(x, batch_size), labels))  # inherits its options
