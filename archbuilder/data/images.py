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
from archbuilder.data.stream import irregular_file
from archbuilder.native_lines import filter_native_stderr
from archbuilder.errors import UserError, shown


def check_channels(channels: int, model: str = "the model") -> None:
    if channels not in (1, 3):
        raise UserError(
            f"{model} takes images with {channels} channels; only 1 (grayscale) or 3 (RGB) can be "
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
def _file_decoder(height: int, width: int, channels: int, pixel_limit: int):
    """_decode for one output shape, traced once per process: tf.data traces the map function of
    every dataset it builds, and this one's orientation and JPEG-scale branches take ~0.3 s to
    trace on a slow CPU, more than decoding a few hundred small photos. A process that decodes
    more than once (train's training and test sets; evaluate after train; the tests) saves it.
    `pixel_limit` (max_image_pixels(), which the trace reads) is part of the key: a limit changed
    within the process, in a notebook's os.environ, gets a decoder of its own."""
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
    with tf.control_dependencies([_pixel_limit_check(data, ratio)]):  # nothing is decoded before it
        index = tf.identity(index)
    return tf.switch_case(index, [whole, *(reduced(r) for r in JPEG_RATIOS)])


# The most pixels an image may have as decoded (a JPEG's after its DCT scaling): Pillow's
# MAX_IMAGE_PIXELS (1024**3 // 4 // 3: 0.25 GiB as RGB), beyond which Pillow calls an image a
# possible decompression bomb. A PNG of a few hundred KB can say 12000x12000 (432 MB decoded, and
# 1.7 GB more while it is resized as float32); each of the streamed decodes in flight (one per core)
# may hold one, and nothing in the memory guard counts them, so the header's size is checked first.
# 89 million pixels is beyond any camera's photo but a few medium-format backs' (100-150 MP), and
# their JPEGs decode scaled down for any input under a quarter of their sides. Where larger images
# are meant (aerial or microscope tiles), PIXEL_LIMIT_VARIABLE raises it.
MAX_IMAGE_PIXELS = 89_478_485
PIXEL_LIMIT_VARIABLE = "ARCHBUILDER_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The most pixels an image may have as decoded: $ARCHBUILDER_MAX_IMAGE_PIXELS, else
    MAX_IMAGE_PIXELS. Read when a decode is built, so a bad value is named before any image is read."""
    written = os.environ.get(PIXEL_LIMIT_VARIABLE, "")
    text = written.strip().replace("_", "")
    if not text:
        return MAX_IMAGE_PIXELS
    # 15 digits at most: the decode compares the count as a float64, exact below 2**53.
    if not (text.isascii() and text.isdigit() and len(text) <= 15 and int(text) > 0):
        raise UserError(f"{PIXEL_LIMIT_VARIABLE}: expected a whole number of pixels from 1 to 999,999,999,999,999, "
                        f"e.g. 200000000 (received: {shown(written)!r})")
    return int(text)


def too_many_pixels_words(sides: str, limit: int) -> str:
    """Why an image of `sides` ("12000x12000 pixels") is refused, in one place for both checks."""
    return f"{sides}, more than the {limit:,} an image may have; raise the limit with {PIXEL_LIMIT_VARIABLE}"


def _pixel_limit_check(data, ratio):
    """An op that fails (InvalidArgumentError, "12000x12000 pixels, more than the ... an image may
    have") when the header of the encoded image says it decodes, at `ratio` (jpeg_ratio), to more
    than max_image_pixels(); only the header is read."""
    import tensorflow as tf

    limit = max_image_pixels()
    height, width = _stored_sides(data)
    scale = tf.cast(ratio, tf.float64)
    decoded_height, decoded_width = tf.math.ceil(height / scale), tf.math.ceil(width / scale)
    sides = tf.strings.format("{}x{}", (tf.cast(width, tf.int64), tf.cast(height, tf.int64)))
    scaled = tf.strings.format(" (decoded at 1/{}: {}x{})", (ratio, tf.cast(decoded_width, tf.int64),
                                                               tf.cast(decoded_height, tf.int64)))
    message = tf.strings.join([sides, " pixels", tf.where(ratio > 1, scaled, ""), too_many_pixels_words("", limit)])
    return tf.debugging.Assert(decoded_height * decoded_width <= limit, [message])


def _stored_sides(data):
    """(height, width) of an encoded image as its header says, as float64 scalars: a JPEG's frame
    (tf.io.extract_jpeg_shape), a PNG's IHDR, a GIF's logical screen, a BMP's info header (a
    negative height: stored top-down), a WebP's VP8X canvas or VP8/VP8L frame (decode_image reads
    WebP whatever the file's suffix); (0, 0) for anything else (decode_image refuses it)."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 32), b"\0" * 32]), 0, 32)
    octets = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def number(start: int, size: int, big_endian: bool = False):
        values = [octets[start + k] for k in range(size)]
        total = tf.constant(0, tf.int64)
        for value in values if big_endian else values[::-1]:
            total = total * 256 + value
        return total

    def signed(value):  # a BMP's int32
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    def starts(signature: bytes, at: int = 0):
        return tf.equal(tf.strings.substr(head, at, len(signature)), signature)

    def of_jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)

    webp = tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8))
    b21, b22, b23, b24 = (octets[k] for k in (21, 22, 23, 24))
    lossless = [1 + (b22 // 64 + b23 * 4 + (b24 % 16) * 1024), 1 + b21 + (b22 % 64) * 256]  # 14-bit sides
    formats = [
        (starts(b"\x89PNG\r\n\x1a\n"), [number(20, 4, True), number(16, 4, True)]),
        (starts(b"GIF8"), [number(8, 2), number(6, 2)]),
        (starts(b"BM"), [signed(number(22, 4)), signed(number(18, 4))]),
        (tf.logical_and(webp, starts(b"VP8X", 12)), [1 + number(27, 3), 1 + number(24, 3)]),
        (tf.logical_and(webp, starts(b"VP8L", 12)), lossless),
        (tf.logical_and(webp, starts(b"VP8 ", 12)), [number(28, 2) % 16384, number(26, 2) % 16384]),
    ]
    sides = tf.cond(tf.io.is_jpeg(data), of_jpeg, lambda: tf.zeros([2], tf.int64))
    for found, (height, width) in formats:
        sides = tf.where(found, tf.stack([height, width]), sides)
    sides = tf.cast(sides, tf.float64)
    return sides[0], sides[1]


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
    if any(irregular_file(name) for name in names):  # before anything opens them (a pipe would hang)
        raise UserError(_describe_bad_files(names, height, width, channels))
    if orientations is None:
        orientations = [exif_orientation(name) for name in names]
    filter_native_stderr()  # here, not only while tracing: the decoder is traced once per process
    dataset = (
        tf.data.Dataset.from_tensor_slices((tf.constant(names, tf.string), tf.constant(orientations, tf.int32)))
        .map(_file_decoder(height, width, channels, max_image_pixels()), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
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
        irregular = irregular_file(name)
        if irregular:  # never opened (stream.irregular_file)
            bad.append((position, shown(name), irregular))
            continue
        reason = decode_failure(lambda: tf.io.read_file(name), (height, width, channels), exif_orientation(name))
        if reason is not None:
            bad.append((position, shown(name), reason))
    return bad


def decode_failure(encoded, shape: tuple[int, int, int], orientation=1) -> str | None:
    """Why the image `encoded()` gives (its bytes, read when called) does not decode at `shape`, as
    the user should read it; None where it does. Decoded alone, eagerly, to say which and why."""
    import tensorflow as tf

    try:
        decode_bytes(encoded(), *shape, orientation)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnknownError) as error:
        return _reason(error)
    return None


# The message of one of our own checks inside the decode (tf.debugging.Assert): "assertion failed:
# [MESSAGE]" where it ran in a graph (tf.data, tf.function), "... Summarized data: b'MESSAGE'" eagerly.
_OWN_CHECK = re.compile(r"assertion failed: \[(.*)\]$|Summarized data: b'(.*)'$", re.MULTILINE)


def _reason(error) -> str:
    """TensorFlow's message without its internals: the first line, less `{{function_node ...}}`;
    one of our checks' message alone."""
    own = _OWN_CHECK.search(error.message or "")
    if own:
        return own.group(1) or own.group(2)
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
