"""Issue 13, item 6: a JPEG's (and a PNG's) EXIF orientation is applied, as phones and viewers apply it.

Real JPEGs and PNGs written by Pillow with the orientation tag; Pillow's own `ImageOps.exif_transpose` is
the reference. Training, evaluation and prediction all decode through `load_image_files`.
"""

from __future__ import annotations

import numpy as np
import pytest

from train_support import image_folder  # noqa: F401  (sets TensorFlow's environment first)

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageOps  # noqa: E402

ORIENTATION = 0x0112


def _photo(path, orientation: int):
    """Four coloured quadrants, 32 high and 48 wide as stored, tagged with `orientation` (a JPEG,
    or a PNG with an eXIf chunk where `path` ends in .png)."""
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:16, :24] = (255, 0, 0)
    pixels[:16, 24:] = (0, 255, 0)
    pixels[16:, :24] = (0, 0, 255)
    pixels[16:, 24:] = (255, 255, 255)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    return path


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_decoded_pixels_are_turned_as_exif_says(tmp_path, suffix):
    from archbuilder.data.images import load_image_files

    paths, expected = [], []
    for orientation in range(1, 9):  # 1 (as stored) is the control
        paths.append(_photo(tmp_path / f"o{orientation}.{suffix}", orientation))
        with Image.open(paths[-1]) as image:
            expected.append(np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.int16))
    # One load per displayed shape (1-4 keep 32x48, 5-8 turn it to 48x32): the same size, no resize.
    decoded = {}
    for shape in {e.shape for e in expected}:
        group = [i for i, e in enumerate(expected) if e.shape == shape]
        decoded.update(zip(group, load_image_files([paths[i] for i in group], shape).astype(np.int16)))
    for orientation in range(1, 9):
        got, expected_here = decoded[orientation - 1], expected[orientation - 1]
        # Both sides decode the same JPEG with libjpeg-turbo; IDCT and chroma upsampling settings
        # may differ by a few levels near the quadrants' edges, while a wrong turn moves whole
        # quadrants (a mean difference near 100).
        assert got.shape == expected_here.shape, orientation
        assert np.abs(got - expected_here).mean() < 4, orientation
        if suffix == "png":  # lossless: the very same pixels, turned
            np.testing.assert_array_equal(got, expected_here, err_msg=str(orientation))


def test_orientation_is_read_from_the_header(tmp_path):
    from archbuilder.data.exif import exif_orientation

    assert exif_orientation(_photo(tmp_path / "six.jpg", 6)) == 6
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    assert exif_orientation(plain) == 1
    png = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(png)
    assert exif_orientation(png) == 1
    assert exif_orientation(_photo(tmp_path / "six.png", 6)) == 6  # eXIf chunk
    lying = tmp_path / "lying.png"  # an eXIf chunk claiming 4 GiB, then the file ends
    lying.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff\xff\xff\xf0eXIfMM\x00\x2a\x00\x00\x00\x08\xff\xff")
    assert exif_orientation(lying) == 1
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(_photo(tmp_path / "b.jpg", 6).read_bytes()[:30])  # EXIF cut short
    assert exif_orientation(broken) in (1, 6)


def test_turned_and_plain_files_decode_together(tmp_path):
    """One batch of files that need turning and files that do not: each as displayed."""
    from archbuilder.data.images import load_image_files

    paths = [_photo(tmp_path / f"o{o}.jpg", o) for o in (1, 6, 1, 3)]
    for path, got in zip(paths, load_image_files(paths, (32, 48, 3))):
        with Image.open(path) as image:
            expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB").resize((48, 32)), np.int16)
        # Orientation 6 turns 32x48 into 48x32, resized back to 32x48 here and by Pillow (other
        # filters: a few levels on average); a wrong or missing turn moves whole quadrants.
        assert np.abs(got.astype(np.int16) - expected).mean() < 12, path.name


def _decode_in_a_fresh_process(paths) -> str:
    import os
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from archbuilder.data.images import load_image_files; "
            "load_image_files([Path(p) for p in sys.argv[1:]], (64, 64, 3))")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.slow  # a real process; by default test_decoded_pixels_are_turned_as_exif_says
def test_turning_decodes_without_onednns_uint8_complaint(tmp_path):
    """A uint8 Transpose makes TensorFlow's oneDNN rewrite log "oneDNN supports DT_UINT8 only on
    platforms with AVX-512" on AVX2 CPUs (it did in every `train` of the sign-language photos, two
    of which are turned); the turns are made without one (on Zen 3 this failed before)."""
    paths = [_photo(tmp_path / f"o{o}.jpg", o) for o in range(1, 9)]
    assert "DT_UINT8" not in _decode_in_a_fresh_process(paths)
