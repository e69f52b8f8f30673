"""Issue 13, item 6: a JPEG's EXIF orientation is applied, as phones and viewers apply it.

Real JPEGs written by Pillow with the orientation tag; Pillow's own `ImageOps.exif_transpose` is
the reference. Training, evaluation and prediction all decode through `load_image_files`.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.train_support import image_folder  # noqa: F401  (sets TensorFlow's environment first)

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageOps  # noqa: E402

ORIENTATION = 0x0112


def _jpeg(path, orientation: int):
    """Four coloured quadrants, 32 high and 48 wide as stored, tagged with `orientation`."""
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:16, :24] = (255, 0, 0)
    pixels[:16, 24:] = (0, 255, 0)
    pixels[16:, :24] = (0, 0, 255)
    pixels[16:, 24:] = (255, 255, 255)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    return path


def test_decoded_pixels_are_turned_as_exif_says(tmp_path):
    from archbuilder.data.images import load_image_files

    for orientation in range(1, 9):  # 1 (as stored) is the control
        path = _jpeg(tmp_path / f"o{orientation}.jpg", orientation)
        with Image.open(path) as image:
            expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.int16)
        got = load_image_files([path], expected.shape)[0].astype(np.int16)  # same size: no resize
        # Both sides decode the same JPEG with libjpeg-turbo; IDCT and chroma upsampling settings
        # may differ by a few levels near the quadrants' edges, while a wrong turn moves whole
        # quadrants (a mean difference near 100).
        assert got.shape == expected.shape, orientation
        assert np.abs(got - expected).mean() < 4, orientation


def test_orientation_is_read_from_the_header(tmp_path):
    from archbuilder.data.exif import exif_orientation

    assert exif_orientation(_jpeg(tmp_path / "six.jpg", 6)) == 6
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    assert exif_orientation(plain) == 1
    png = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(png)
    assert exif_orientation(png) == 1
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(_jpeg(tmp_path / "b.jpg", 6).read_bytes()[:30])  # EXIF cut short
    assert exif_orientation(broken) in (1, 6)
