"""Augmentation (data/augment.py): each example's change depends only on (seed, epoch, its index),
so it is the same however tf.data's parallel calls are ordered, and a resumed run sees it again."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.spec.training import AugmentationSpec

RECIPE_LIKE = AugmentationSpec(rotation=0.06, zoom=0.1, translation=0.08, contrast=0.2, brightness=0.1,
                               horizontal_flip=True)


# Augmenting a batch of another size may sum the contrast layer's per-image mean in another order
# (the reduction's split over SIMD lanes and threads follows the tensor's shape): float32 rounding,
# a few ulps of values up to 255 (ulp 1.5e-5), so 1e-3 on the 0-255 scale with a wide margin.
SPLIT_ROUNDING = 1e-3


def _images(count=40, side=24):
    """Images with structure (gradients plus noise), so every geometric change moves pixels."""
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 200, side)[None, :, None] + np.linspace(0, 50, side)[:, None, None]
    return np.clip(ramp + rng.integers(0, 56, (count, side, side, 3)), 0, 255).astype(np.uint8)


def _augmented(x, y, first_epoch, epochs, augmentation=RECIPE_LIKE, seed=11, batch=8):
    from archbuilder.data.pipeline import training_dataset

    return [(images.numpy(), labels.numpy())
            for images, labels in training_dataset(x, y, 4, batch, seed, first_epoch, epochs, augmentation)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(a, b))


def test_the_same_seed_and_epoch_give_bit_identical_augmented_batches_and_a_resume_sees_them():
    x, y = _images(), np.arange(40) % 4
    # The augmentation map runs with parallel calls (AUTOTUNE); with the Keras layers' own seed
    # generators these builds differed (their state advances in call order).
    runs = [_augmented(x, y, 0, 3) for _ in range(3)]
    assert _same(runs[0], runs[1]) and _same(runs[0], runs[2])
    steps = 5  # 40 images in batches of 8
    assert _same(runs[0][2 * steps:], _augmented(x, y, 2, 3))  # resumed at epoch 2 of 3
    assert not _same(runs[0][:steps], _augmented(x, y, 0, 1, seed=12))  # another seed, other changes


def test_mixed_bfloat16_training_augments_the_same_float32_images():
    """`training.precision: mixed_bfloat16` sets Keras's global policy before the pipeline is made;
    the augmentation stays float32 (bfloat16 would round 0-255 pixels to steps of up to 1, and its
    contrast layer failed on a float32 factor): the same batches, bit for bit."""
    from archbuilder.training.precision import precision_policy

    x, y = _images(16), np.arange(16) % 4
    with precision_policy("mixed_bfloat16"):
        mixed = _augmented(x, y, 0, 1)
    assert mixed[0][0].dtype == np.float32 and _same(mixed, _augmented(x, y, 0, 1))


def test_an_example_is_changed_by_its_epoch_and_index_not_by_its_batch():
    from archbuilder.data.augment import StatelessAugmentation

    x = _images(6).astype(np.float32)
    augment = StatelessAugmentation(RECIPE_LIKE, seed=11)
    whole = augment(x, np.full(6, 1), np.arange(6)).numpy()
    # The same examples cut into other batches, in another order: the same pixels each, up to
    # rounding (SPLIT_ROUNDING); another draw would move pixels by whole units.
    parts = [augment(x[[4, 1]], np.full(2, 1), np.array([4, 1])).numpy(),
             augment(x[[0, 5, 2, 3]], np.full(4, 1), np.array([0, 5, 2, 3])).numpy()]
    np.testing.assert_allclose(whole[[4, 1]], parts[0], rtol=0, atol=SPLIT_ROUNDING)
    np.testing.assert_allclose(whole[[0, 5, 2, 3]], parts[1], rtol=0, atol=SPLIT_ROUNDING)
    other_epoch = augment(x, np.full(6, 2), np.arange(6)).numpy()
    assert all(not np.array_equal(whole[i], other_epoch[i]) for i in range(6))  # a new change each epoch


def test_each_change_keeps_the_keras_layers_meaning_and_range():
    """Flip: the image or its mirror, both seen. Contrast: (x - mean) * f + mean, f drawn over the
    range keras.layers.RandomContrast(c) draws from ([1 - lo, 1 + hi] of its `factor`; Keras 3 makes
    that [1, 1 + c] for a number c). Brightness b: x + d, d over RandomBrightness(b)'s [-255 b, 255 b]."""
    import keras

    from archbuilder.data.augment import StatelessAugmentation

    x = _images(64).astype(np.float32)
    epochs, positions = np.zeros(64), np.arange(64)
    flipped = StatelessAugmentation(AugmentationSpec(horizontal_flip=True), 0)(x, epochs, positions).numpy()
    mirrored = [np.array_equal(f, a[:, ::-1]) for f, a in zip(flipped, x)]
    kept = [np.array_equal(f, a) for f, a in zip(flipped, x)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 10 < sum(mirrored) < 54  # ~half of 64 flipped

    # Mid-range pixels only, so that no clipping to 0-255 hides the factor.
    flat = np.full((64, 8, 8, 3), 100.0, np.float32)
    flat[:, :4] = 140.0
    contrasted = StatelessAugmentation(AugmentationSpec(contrast=0.2), 0)(flat, epochs, positions).numpy()
    factors = (contrasted[:, 0, 0, 0] - 120.0) / 20.0  # the mean is 120, each half 20 from it
    low, high = keras.layers.RandomContrast(0.2).factor
    low, high = 1.0 - low, 1.0 + high
    # 1e-4: float32 rounding of 120 + 20 f; a spread over half the range shows the draws cover it.
    assert factors.min() >= low - 1e-4 and factors.max() <= high + 1e-4
    assert factors.max() - factors.min() > (high - low) / 2
    brightened = StatelessAugmentation(AugmentationSpec(brightness=0.1), 0)(flat, epochs, positions).numpy()
    deltas = brightened[:, 0, 0, 0] - 140.0
    low, high = keras.layers.RandomBrightness(0.1).factor
    assert deltas.min() >= 255 * low - 1e-3 and deltas.max() <= 255 * high + 1e-3
    assert deltas.max() - deltas.min() > 255 * (high - low) / 2  # the draws cover the range
    np.testing.assert_allclose(brightened - flat, np.broadcast_to(deltas[:, None, None, None], flat.shape), atol=1e-3)


@pytest.mark.slow  # a mirrored run; by default test_the_same_seed_and_epoch_give_bit_identical_augmented_batches_and_a_resume_sees_them
def test_replica_slices_are_augmented_as_the_single_device_batch():
    """Under mirrored and multi-worker each replica augments its slice as one device augments the
    whole batch (the draws follow the images, not the batch), so the replicas together see it."""
    # Before data.augment the Keras layers drew one sequence per call: slices got other changes.
    import tensorflow as tf

    from archbuilder.data.pipeline import replica_training_dataset

    x, y = _images(), np.arange(40) % 4
    single = _augmented(x, y, 0, 2)
    for pipelines in (1, 2):  # one worker with 2 replicas; two workers of one replica each
        slices = [[(images.numpy(), labels.numpy()) for images, labels in replica_training_dataset(
            tf.distribute.InputContext(pipelines, worker, 2), x, y, 4, 8, 11, 0, 2, RECIPE_LIKE)]
            for worker in range(pipelines)]
        per_batch = [part for batches in zip(*[iter(s) for s in slices]) for part in batches] if pipelines == 2 \
            else slices[0]
        joined = [tuple(np.concatenate([a[k], b[k]]) for k in (0, 1)) for a, b in zip(per_batch[::2], per_batch[1::2])]
        assert len(joined) == len(single) == 10
        for (images, labels), (want_images, want_labels) in zip(joined, single):
            np.testing.assert_array_equal(labels, want_labels)
            # Half batches: rounding only (SPLIT_ROUNDING, here on images divided by 255).
            np.testing.assert_allclose(images, want_images, rtol=0, atol=SPLIT_ROUNDING / 255)
