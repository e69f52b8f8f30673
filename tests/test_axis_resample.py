"""Zoom and translation in two 1-D passes (data/axis_resample.py): bit for bit the pixels of the
kernel keras.layers.RandomZoom and RandomTranslation call (ImageProjectiveTransformV3, bilinear,
reflect), so training batches are unchanged. Equality is exact: the passes do the kernel's float32
operations in its order, so there is no rounding to allow for."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.spec.training import AugmentationSpec


def _kernel(images, transforms):
    """What Keras's TensorFlow backend runs for these layers (keras backend image.affine_transform)."""
    import tensorflow as tf

    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")


def _axis_transforms(rng, count, height, width, kind):
    """Rows [a0 0 a2 0 b1 b2 0 0]: zooms from 0.3x to 3x, shifts up to three sides away (the
    reflection folds them more than once), or whole-pixel shifts (coordinates exactly on pixels,
    the last included, where the kernel reads its fill value with weight 0)."""
    rows = np.zeros((count, 8), np.float32)
    rows[:, 0], rows[:, 4] = (1.0, 1.0) if kind != "zoom" else (rng.uniform(0.3, 3, count), rng.uniform(0.3, 3, count))
    rows[:, 2], rows[:, 5] = rng.uniform(-3 * width, 3 * width, count), rng.uniform(-3 * height, 3 * height, count)
    if kind == "whole":
        rows[:, [2, 5]] = np.round(rows[:, [2, 5]])
    return rows


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_zoom_and_translation_pixels_are_the_keras_kernels_bit_for_bit(dtype):
    import tensorflow as tf

    from archbuilder.data.axis_resample import axis_aligned_transform

    rng = np.random.default_rng(5)
    sizes = [(1, 1), (1, 7), (6, 1), (2, 2), (9, 16), (31, 24), (64, 64)]
    for height, width in sizes:
        for kind in ("zoom", "shift", "whole"):
            images = tf.cast(rng.uniform(0, 255, (4, height, width, 3)).astype(np.float32), dtype)
            transforms = tf.constant(_axis_transforms(rng, 4, height, width, kind))
            ours = axis_aligned_transform(images, transforms)
            assert ours.dtype == images.dtype
            np.testing.assert_array_equal(tf.cast(ours, tf.float32).numpy(),
                                          tf.cast(_kernel(images, transforms), tf.float32).numpy(),
                                          err_msg=f"{height}x{width} {kind} {dtype}")


def test_the_recipe_augmentation_gives_the_keras_layers_own_pixels():
    """StatelessAugmentation (rotation, zoom, translation, contrast, brightness, flip) against the
    same draws through every layer's own `transform_images`: the two-pass zoom and translation,
    fed the rows the layers' own code makes, change nothing, eagerly and inside a tf.data map
    (whose function graph TensorFlow optimizes before running it) as training runs it."""
    import tensorflow as tf

    from archbuilder.data.augment import StatelessAugmentation, example_draws

    spec = AugmentationSpec(rotation=0.06, zoom=0.1, translation=0.08, contrast=0.2, brightness=0.1,
                            horizontal_flip=True)
    rng = np.random.default_rng(8)
    images = tf.constant(rng.integers(0, 256, (16, 40, 56, 3)).astype(np.float32))
    epochs, positions = np.full(16, 3), np.arange(100, 116)
    augment = StatelessAugmentation(spec, seed=4)
    draws = example_draws(4, epochs, positions)
    expected = images
    for layer in augment.layers:
        expected = layer.transform_images(expected, augment._transformation(layer, expected, draws), training=True)
    np.testing.assert_array_equal(augment(images, epochs, positions).numpy(), expected.numpy())
    mapped = tf.data.Dataset.from_tensors((images, epochs, positions)).map(augment)
    np.testing.assert_array_equal(next(iter(mapped)).numpy(), expected.numpy())
    assert sum(type(layer).__name__ in ("RandomZoom", "RandomTranslation") for layer in augment.layers) == 2


def test_other_fill_modes_keep_the_keras_kernel():
    """Only what data.pipeline makes (reflect, bilinear, fill 0) is resampled in two passes."""
    import keras

    from archbuilder.data.axis_resample import resamples_exactly

    assert resamples_exactly(keras.layers.RandomZoom(0.1, fill_mode="reflect"))
    assert resamples_exactly(keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect"))
    assert not resamples_exactly(keras.layers.RandomZoom(0.1, fill_mode="constant"))
    assert not resamples_exactly(keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", interpolation="nearest"))
    assert not resamples_exactly(keras.layers.RandomRotation(0.1, fill_mode="reflect"))
