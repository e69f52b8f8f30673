"""Decode and resize images: the single preprocessing used for training, evaluation and prediction.

Every image, from a JPEG/PNG file or an HDF5 array, becomes uint8 pixels of the model's input
height, width and channels (bilinear resize with antialiasing, rounded). The model then sees
`x / 255` (pipeline.normalize). Keeping the resized pixels as uint8 is what makes the cache small
(1,762 images at 64x64x3 = 21 MB) and prediction bit-identical to training.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from archbuilder.data.dataset_options import without_autotuning
from archbuilder.data.exif import exif_orientation
from archbuilder.native_lines import filter_native_stderr
from archbuilder.errors import UserError, shown


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


def _swap_axes(image):
    """`image` with its height and width axes swapped, as a gather instead of a Transpose.

    TensorFlow's oneDNN graph rewrite logs "oneDNN supports DT_UINT8 only on platforms with
    AVX-512" for a uint8 Transpose on AVX2 CPUs (a native line in every `train` of a folder with
    one turned photo), and grappler moves a Transpose of cast pixels back before the cast; a
    gather moves the same bytes and is not rewritten.
    """
    import tensorflow as tf

    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    pixels = tf.reshape(image, [height * width, shape[2]])
    # Row-major over the output's (width, height): output[x, y] = image[y, x] = pixels[y * width + x].
    order = tf.reshape(tf.range(height)[None, :] * width + tf.range(width)[:, None], [-1])
    return tf.reshape(tf.gather(pixels, order), [width, height, shape[2]])


def _orient(image, orientation):
    """Turn decoded pixels as EXIF `orientation` (1..8) says, so they are seen as displayed.

    The turns are tf.image.rot90's (reversals and a swap of axes) with `_swap_axes` for its
    transpose: orientation 6 ("turn 90° clockwise") is rot90's k=3, reverse(swap(image), x).
    """
    import tensorflow as tf

    branches = [
        lambda: image,                                           # 1: as stored
        lambda: tf.reverse(image, [1]),                          # 2: mirrored
        lambda: tf.reverse(image, [0, 1]),                       # 3: upside down
        lambda: tf.reverse(image, [0]),                          # 4: mirrored upside down
        lambda: _swap_axes(image),                               # 5: transpose
        lambda: tf.reverse(_swap_axes(image), [1]),              # 6: turn 90° clockwise
        lambda: tf.reverse(_swap_axes(image), [0, 1]),           # 7: transverse
        lambda: _swap_axes(tf.reverse(image, [1])),              # 8: turn 90° counter-clockwise
    ]
    return tf.switch_case(tf.cast(orientation, tf.int32) - 1, branches, default=branches[0])


def _decode(path, height: int, width: int, channels: int, orientation=1):
    import tensorflow as tf

    return decode_bytes(tf.io.read_file(path), height, width, channels, orientation)


@functools.lru_cache(maxsize=None)
def _file_decoder(height: int, width: int, channels: int):
    """_decode for one output shape, traced once per process: tf.data traces the map function of
    every dataset it builds, and this one's orientation and JPEG-scale branches take ~0.3 s to
    trace on a slow CPU, more than decoding a few hundred small photos. A process that decodes
    more than once (train's training and test sets; evaluate after train; the tests) saves it."""
    import tensorflow as tf

    def decode(path, orientation):
        return _decode(path, height, width, channels, orientation)

    return tf.function(decode, input_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)),
                       autograph=False)


def decode_bytes(data, height: int, width: int, channels: int, orientation=1):
    """An encoded image (a file's bytes, or a record's) -> uint8 (height, width, channels): the
    one decode of every image, turned as its EXIF `orientation` says, then resized."""
    import tensorflow as tf

    # A damaged JPEG's libjpeg lines stay off the terminal (native_lines.py). Called as plain
    # Python: this runs while tf.data traces the map function, and autograph would otherwise convert
    # the filter's code, down to the exit handler that waits for its process, whose conversion at exit
    # left __autograph_generated_file*.py in TMPDIR (handlers registered during exit never run).
    tf.autograph.experimental.do_not_convert(filter_native_stderr)()
    image = _decode_reduced(data, height, width, channels, orientation)
    image.set_shape([None, None, channels])
    image = _orient(image, orientation)
    image.set_shape([None, None, channels])
    return _resize_uint8(image, height, width)


JPEG_RATIOS = (2, 4, 8)  # the scales libjpeg's DCT decodes a JPEG at directly (tf.io.decode_jpeg's `ratio`)


def jpeg_ratio(data, height: int, width: int, orientation=1):
    """The largest of 1 and JPEG_RATIOS by which a JPEG's sides, as displayed (EXIF `orientation`
    5-8 swaps them), are still at least (height, width); 1 for every other image. Only the JPEG's
    header is parsed (tf.io.extract_jpeg_shape), not its pixels."""
    import tensorflow as tf

    def of_jpeg():
        shape = tf.io.extract_jpeg_shape(data)
        swapped = tf.cast(orientation, tf.int32) >= 5
        tall = tf.where(swapped, shape[1], shape[0])
        wide = tf.where(swapped, shape[0], shape[1])
        ratio = tf.constant(1, tf.int32)
        for r in JPEG_RATIOS:
            ratio = tf.where(tf.logical_and(tall >= r * height, wide >= r * width), r, ratio)
        return ratio

    return tf.cond(tf.io.is_jpeg(data), of_jpeg, lambda: tf.constant(1, tf.int32))


def _decode_reduced(data, height: int, width: int, channels: int, orientation=1):
    """The encoded image decoded, a JPEG many times larger than (height, width) at 1/2, 1/4 or 1/8
    of its size by libjpeg's DCT scaling (jpeg_ratio): several times less decode work, and the
    resize that follows still antialiases. Anything else, and a JPEG near the target size (the
    sign photos, 100x100 for 64x64), is decoded whole as always."""
    import tensorflow as tf

    def whole():
        return tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)

    def reduced(ratio):
        return lambda: tf.io.decode_jpeg(data, channels=channels, ratio=ratio)

    ratio = jpeg_ratio(data, height, width, orientation)
    index = tf.constant(0, tf.int32)  # the branch: 0 whole, k the k-th of JPEG_RATIOS
    for k, r in enumerate(JPEG_RATIOS, start=1):
        index = tf.where(tf.equal(ratio, r), k, index)
    return tf.switch_case(index, [whole, *(reduced(r) for r in JPEG_RATIOS)])


def _file_names(paths: Sequence[Path]) -> list[bytes]:
    """File names as bytes: TensorFlow's strings are bytes, and a name that is not UTF-8 (which
    Python holds as surrogates) cannot become a tf.string any other way."""
    return [os.fsencode(p) for p in paths]


def load_image_files(paths: Sequence[Path], shape: tuple[int, int, int],
                     orientations: Sequence[int] | None = None) -> np.ndarray:
    """uint8 array (N, H, W, C) from image files, decoded in parallel with tf.data.

    A file TensorFlow cannot decode (not an image, truncated) is an error naming every such file.
    A JPEG's EXIF orientation is applied before resizing (archbuilder.data.exif); `orientations`
    are the files' own, when their headers were read already (data.stream.read_headers).
    The array is filled batch by batch: the decoded images are held once, not twice.
    """
    import tensorflow as tf

    height, width, channels = shape
    check_channels(channels)
    names = _file_names(paths)
    if orientations is None:
        orientations = [exif_orientation(name) for name in names]
    filter_native_stderr()  # here, not only while tracing: the decoder is traced once per process
    dataset = (
        tf.data.Dataset.from_tensor_slices((tf.constant(names, tf.string), tf.constant(orientations, tf.int32)))
        .map(_file_decoder(height, width, channels), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(max(1, min(256, _BATCH_BYTES // (height * width * channels))))
    )
    dataset = without_autotuning(dataset)
    out = np.empty((len(names), height, width, channels), np.uint8)
    try:
        position = 0
        for batch in dataset:
            out[position:position + len(batch)] = batch.numpy()
            position += len(batch)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnknownError):
        raise UserError(_describe_bad_files(names, height, width, channels)) from None
    except tf.errors.ResourceExhaustedError:
        raise UserError(f"not enough memory to resize the images to {height}x{width}x{channels} "
                        f"({height * width * channels:,} values each)") from None
    return out


# Decoded images are batched in groups of at most this many bytes (and 256 images): a huge input
# size then takes one image at a time rather than 256.
_BATCH_BYTES = 64 * 2**20


def bad_image_files(paths: Sequence[Path], shape: tuple[int, int, int]) -> list[tuple[int, str, str]]:
    """(position in `paths`, file, reason) for each file that cannot be read and decoded; [] when
    all can (one batch load). By position: two names can be shown alike (shown() escapes)."""
    try:
        load_image_files(paths, shape)
        return []
    except UserError:
        return _bad_files(_file_names(paths), *shape)


def _bad_files(names: list[bytes], height: int, width: int, channels: int) -> list[tuple[int, str, str]]:
    """(position, file as the user sees it, reason) for each file that does not decode."""
    import tensorflow as tf

    bad = []
    for position, name in enumerate(names):
        try:
            _decode(tf.constant(name), height, width, channels, exif_orientation(name))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnknownError) as error:
            bad.append((position, shown(name), _reason(error)))
    return bad


def _reason(error) -> str:
    """TensorFlow's message without its internals: the first line, less `{{function_node ...}}`."""
    text = (error.message or type(error).__name__).splitlines()[0]
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text)  # " [Op:DecodeImage] name: " of an eager op
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text).strip() or type(error).__name__


def _describe_bad_files(names: list[bytes], height: int, width: int, channels: int) -> str:
    bad = [f"{name}: not a readable image ({reason})" for _, name, reason in _bad_files(names, height, width, channels)]
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
    dataset = without_autotuning(
        tf.data.Dataset.from_tensor_slices(x).map(lambda im: _resize_uint8(im, height, width)).batch(256))
    return np.concatenate([b.numpy() for b in dataset])
