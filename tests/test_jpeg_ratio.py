"""A JPEG many times the model's input size is decoded at 1/2, 1/4 or 1/8 by libjpeg's DCT scaling
(data/images.py, jpeg_ratio), then resized with antialiasing as always: how far its pixels may be
from decoding it whole, and that images near the input size (the sign photos) are untouched."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from train_support import IMAGES


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _whole_then_resized(data: bytes, height: int, width: int) -> np.ndarray:
    """The decode before the ratio existed: the whole JPEG, then the same antialiased resize."""
    import tensorflow as tf

    from archbuilder.data.images import _resize_uint8

    return _resize_uint8(tf.io.decode_image(data, channels=3, expand_animations=False), height, width).numpy()


def test_the_sign_photos_decode_to_the_same_pixels_as_before():
    """100x100 photos for 64x64 are less than twice the size: the ratio never applies (floor)."""
    from archbuilder.data.images import decode_bytes, jpeg_ratio

    for photo in sorted((IMAGES / "7").iterdir())[:20]:
        data = photo.read_bytes()
        assert int(jpeg_ratio(data, 64, 64)) == 1
        np.testing.assert_array_equal(decode_bytes(data, 64, 64, 3).numpy(), _whole_then_resized(data, 64, 64))


def test_the_ratio_is_the_largest_that_keeps_both_displayed_sides_at_least_the_input_size():
    from archbuilder.data.images import jpeg_ratio

    data = _jpeg(np.zeros((300, 1024, 3), np.uint8))  # stored 300 high, 1024 wide
    cases = ((150, 512), (75, 256), (75, 257), (37, 128), (151, 64))  # exactly r times fits: 300 = 4 x 75, 1024 = 4 x 256
    assert [int(jpeg_ratio(data, h, w)) for h, w in cases] == [2, 4, 2, 8, 1]
    # EXIF orientation 6 displays it 1024 high and 300 wide: the sides swap before they are compared.
    assert int(jpeg_ratio(data, 448, 128, orientation=6)) == 2 and int(jpeg_ratio(data, 448, 128)) == 1
    png = io.BytesIO()
    Image.fromarray(np.zeros((800, 800, 3), np.uint8)).save(png, "PNG")
    assert int(jpeg_ratio(png.getvalue(), 64, 64)) == 1  # only JPEGs have DCT scaling


def _photo(width: int, height: int, digit: str) -> np.ndarray:
    """A real sign photo brought up to a camera's size (bicubic): photo content at each ratio."""
    with Image.open(sorted((IMAGES / digit).iterdir())[0]) as image:
        return np.asarray(image.convert("RGB").resize((width, height), Image.BICUBIC))


@pytest.mark.parametrize("size, ratio", [((224, 224), 2), ((192, 192), 4), ((96, 96), 8), ((64, 64), 8)])
def test_the_ratio_path_stays_within_a_gray_level_of_the_whole_decode_on_photos(size, ratio):
    """Both paths are a normalized, symmetric low-pass filter (libjpeg's scaled IDCT then the
    antialiased bilinear resize, against the resize alone), so they agree exactly on content that
    is linear across a filter's width and differ only by the photo's curvature within it and by
    rounding (each path rounds to uint8 once: up to 1 level between them). Bound: under one gray
    level on average, and no pixel farther from the whole decode than another standard
    antialiased downscale (TensorFlow's `area` resize of the whole decode) is from it, plus that
    rounding level. Measured (1024x768 photos of 5 digits): mean 0.44-0.82, max 2-7 (`area`: 3-12)."""
    import tensorflow as tf

    from archbuilder.data.images import decode_bytes, jpeg_ratio

    height, width = size
    for digit in "02468":
        data = _jpeg(_photo(1024, 768, digit))
        assert int(jpeg_ratio(data, height, width)) == ratio
        reduced = decode_bytes(data, height, width, 3).numpy().astype(np.int16)
        whole = _whole_then_resized(data, height, width).astype(np.int16)
        area = tf.image.resize(tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32),
                               size, method="area")
        area = np.clip(np.round(area.numpy()), 0, 255).astype(np.int16)
        difference = np.abs(reduced - whole)
        assert difference.mean() < 1.0, (digit, difference.mean())
        assert difference.max() <= np.abs(area - whole).max() + 1, (digit, difference.max(), np.abs(area - whole).max())
