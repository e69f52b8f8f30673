"""Which kind of file a name is: the one table of suffixes, compared case-insensitively.

Cameras and Windows tools write `IMG_1118.JPG` and `MODEL.H5`; every command treats an upper-case
suffix exactly like the lower-case one.
"""

from __future__ import annotations

import os
import stat
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


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def file_kind(path: str | os.PathLike) -> str | None:
    """What `path` (its links followed) is where it is no regular file: "a named pipe", "a folder",
    ...; None for a regular file, and for one that stat cannot reach (missing, a dangling link),
    which its caller names as it does. A pipe is never to be opened (it waits for a writer for
    ever), nor a device (it may never end)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")
