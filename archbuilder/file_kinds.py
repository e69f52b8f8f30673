"""Which kind of file a name is: the one table of suffixes, compared case-insensitively.

Cameras and Windows tools write `IMG_1118.JPG` and `MODEL.H5`; every command treats an upper-case
suffix exactly like the lower-case one.
"""

from __future__ import annotations

import os
from pathlib import Path

KERAS_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")  # what tf.io.decode_image reads
DIAGRAM_SUFFIXES = (".png", ".svg")


def suffix(path: str | os.PathLike) -> str:
    """The lower-case suffix: `Path("A.H5")` -> ".h5"."""
    return Path(path).suffix.lower()


def is_keras(path: str | os.PathLike) -> bool:
    return suffix(path) in KERAS_SUFFIXES


def is_h5(path: str | os.PathLike) -> bool:
    return suffix(path) in H5_SUFFIXES


def is_image(path: str | os.PathLike) -> bool:
    return suffix(path) in IMAGE_SUFFIXES
