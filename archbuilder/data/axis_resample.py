"""Zoom and translation resampled in two 1-D passes: the same pixels as Keras's kernel, ~2.5x faster.

keras.layers.RandomZoom and RandomTranslation resample through TensorFlow's
ImageProjectiveTransformV3, which computes every output value (each pixel's each channel) alone:
its source coordinates, their reflection into the image, four bounds-checked reads. For their
transforms, which neither rotate nor shear (rows [a0 0 a2 0 b1 b2 0 0]), the source column depends
on the output column only and the source row on the output row only, so the coordinates are two
short vectors, and the kernel's bilinear sum is separable as it is written: it interpolates along x
on the two source rows, then along y between them. Done the same way here, with the same float32
operations in the same order (no fused multiply-add: each product is rounded, then summed), every
output value is bit-identical to the kernel's (tests/test_axis_resample.py compares them), so the
training batches are the ones the Keras layers gave.

Cost on a batch of 32 224x224 images, one thread (bench/augment_speed.py; Intel Xeon with AMX,
2026-12-03): the kernel 116-144 ms, these passes 54-59 ms. The x pass runs on the transposed
batch, so that both passes gather whole rows (contiguous) and weight them with a per-row factor;
gathering single pixels along x, the straightforward form, cost 103 ms.

Only `fill_mode="reflect"`, bilinear, fill value 0, channels last: what data.pipeline's layers use
(`resamples_exactly` says whether a layer is such; others keep the Keras kernel).
"""

from __future__ import annotations


def resamples_exactly(layer) -> bool:
    """Whether `axis_aligned_transform` gives `layer.transform_images`'s pixels for this layer."""
    import keras

    return (isinstance(layer, (keras.layers.RandomZoom, keras.layers.RandomTranslation))
            and layer.fill_mode == "reflect" and layer.interpolation == "bilinear"
            and float(layer.fill_value) == 0.0 and layer.data_format == "channels_last")


def axis_aligned_transform(images, transforms):
    """ImageProjectiveTransformV3(images, transforms, bilinear, reflect, fill 0), for `transforms`
    [batch, 8] whose entries 1, 3, 6 and 7 are 0 (a zoom or a translation). `images` [batch, H, W,
    C], any float dtype: computed in float32 and rounded to it once at the end, as the kernel does."""
    import tensorflow as tf

    dtype = images.dtype
    images = tf.cast(images, tf.float32)
    transforms = tf.cast(transforms, tf.float32)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    # The kernel's input_x = (a0 * x + a1 * y + a2) / (c0 * x + c1 * y + 1); with a1, c0, c1 zero
    # the terms they multiply add +0 and the division is by 1, both exact.
    x = _reflect(transforms[:, 0:1] * tf.cast(tf.range(width), tf.float32)[None, :] + transforms[:, 2:3], width)
    y = _reflect(transforms[:, 4:5] * tf.cast(tf.range(height), tf.float32)[None, :] + transforms[:, 5:6], height)
    x_floor, y_floor = tf.floor(x), tf.floor(y)
    x_ceil, y_ceil = x_floor + 1.0, y_floor + 1.0
    # The kernel reads the fill value (0) at index H or W, where its weight (x - x_floor) is 0: the
    # product is 0 either way, so the last column or row stands in for it (pixels are finite).
    left, top = tf.cast(x_floor, tf.int32), tf.cast(y_floor, tf.int32)
    right, bottom = tf.minimum(left + 1, width - 1), tf.minimum(top + 1, height - 1)

    columns = tf.transpose(images, [0, 2, 1, 3])  # [batch, W, H, C]: a source column is one row here
    per_line = lambda weight: weight[:, :, None, None]  # noqa: E731  [batch, n]: one weight per gathered line
    rows = tf.transpose(per_line(x_ceil - x) * tf.gather(columns, left, axis=1, batch_dims=1)
                        + per_line(x - x_floor) * tf.gather(columns, right, axis=1, batch_dims=1), [0, 2, 1, 3])
    out = (per_line(y_ceil - y) * tf.gather(rows, top, axis=1, batch_dims=1)
           + per_line(y - y_floor) * tf.gather(rows, bottom, axis=1, batch_dims=1))
    return tf.cast(out, dtype)


def _reflect(coordinate, length):
    """The kernel's MapCoordinate<FILL_REFLECT> (after scipy.ndimage): `coordinate` float32, folded
    into [0, length - 1] by reflecting about the edges of the first and last pixel, [dcba|abcd|dcba];
    the same integer truncations and float operations, in its order."""
    import tensorflow as tf

    size = tf.cast(length, tf.float32)
    twice = 2.0 * size  # 2 * length, an integer, exact in float32
    below = twice * tf.cast(tf.cast(-coordinate / twice, tf.int64), tf.float32) + coordinate
    below = tf.where(below < -size, below + twice, -below - 1.0)
    above = coordinate - twice * tf.cast(tf.cast(coordinate / twice, tf.int64), tf.float32)
    above = tf.where(above >= size, twice - above - 1.0, above)
    folded = tf.where(coordinate < 0.0, below, tf.where(coordinate > size - 1.0, above, coordinate))
    folded = tf.where(length <= 1, tf.zeros_like(coordinate), folded)
    return tf.minimum(tf.maximum(folded, 0.0), size - 1.0)
