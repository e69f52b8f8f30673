"""Decode and resize images: the single preprocessing used for training, evaluation and prediction.

Every image, from a JPEG/PNG file or an HDF5 array, becomes uint8 pixels of the model's input
height, width and channels (bilinear resize with antialiasing, rounded). The model then sees
`x / 255` (pipeline.normalize). Keeping the resized pixels as uint8 is what makes the cache small
(1,762 images at 64x64x3 = 21 MB) and prediction bit-identical to training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from archbuilder.errors import UserError


def check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise UserError(
            f"the model takes images with {channels} channels; only 1 (grayscale) or 3 (RGB) can be "
            "made from image files"
        )


def _resize_uint8(image, height: int, width: int):
    import tensorflow as tf

    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))

    def resized():
        out = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

    return tf.cond(same, lambda: tf.cast(image, tf.uint8), resized)


def _decode(path, height: int, width: int, channels: int):
    import tensorflow as tf

    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, channels])
    return _resize_uint8(image, height, width)


def load_image_files(paths: Sequence[Path], shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 array (N, H, W, C) from image files, decoded in parallel with tf.data.

    A file TensorFlow cannot decode (not an image, truncated) is an error naming every such file.
    """
    import tensorflow as tf

    height, width, channels = shape
    check_channels(channels)
    names = [str(p) for p in paths]
    dataset = (
        tf.data.Dataset.from_tensor_slices(names)
        .map(lambda p: _decode(p, height, width, channels), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(256)
    )
    try:
        batches = [batch.numpy() for batch in dataset]
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnknownError):
        raise UserError(_describe_bad_files(names, height, width, channels)) from None
    if not batches:
        return np.zeros((0, height, width, channels), np.uint8)
    return np.concatenate(batches)


def bad_image_files(paths: Sequence[Path], shape: tuple[int, int, int]) -> list[tuple[str, str]]:
    """(file, reason) for each file that cannot be read and decoded; [] when all can (one batch load)."""
    try:
        load_image_files(paths, shape)
        return []
    except UserError:
        return _bad_files([str(p) for p in paths], *shape)


def _bad_files(names: list[str], height: int, width: int, channels: int) -> list[tuple[str, str]]:
    import tensorflow as tf

    bad = []
    for name in names:
        try:
            _decode(tf.constant(name), height, width, channels)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnknownError) as error:
            reason = error.message.splitlines()[0] if error.message else type(error).__name__
            bad.append((name, reason))
    return bad


def _describe_bad_files(names: list[str], height: int, width: int, channels: int) -> str:
    bad = [f"{name}: not a readable image ({reason})" for name, reason in _bad_files(names, height, width, channels)]
    if not bad:  # pragma: no cover - the batch failed but no single file does
        return "could not decode the images"
    more = f"\n... and {len(bad) - 10} more" if len(bad) > 10 else ""
    return "\n".join(bad[:10]) + more


def fit_arrays(x: np.ndarray, shape: tuple[int, int, int], origin: str) -> np.ndarray:
    """Arrays from an HDF5 file, brought to the model's input shape by the same resize."""
    import tensorflow as tf

    height, width, channels = shape
    check_channels(channels)
    if x.shape[-1] != channels:
        if x.shape[-1] == 1 and channels == 3:
            x = np.repeat(x, 3, axis=-1)
        elif x.shape[-1] == 3 and channels == 1:
            x = np.asarray(tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(x, tf.float32))), tf.uint8))
        else:
            raise UserError(f"{origin}: images have {x.shape[-1]} channels; the model takes {channels}")
    if x.shape[1:3] == (height, width):
        return x.astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(x).map(lambda im: _resize_uint8(im, height, width)).batch(256)
    return np.concatenate([b.numpy() for b in dataset])
