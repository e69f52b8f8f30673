"""Check that an output path can be written before any work starts.

A build, a training run or a packed dataset that fails at its very last step, because the folder
is read-only or a name is taken by a file, wastes the user's time and can leave half a result.
Each command checks its outputs first: the nearest existing folder must accept a new file (a
temporary file is created there and removed, which is the only reliable test: `os.access` says
yes to root on /proc).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from archbuilder.errors import UserError, shown

PROBE_PREFIX = ".archbuilder-write-check-"  # the short-lived file _check_writable creates


def check_output_folder(path: str | os.PathLike) -> Path:
    """`path` is, or can become, a folder we can write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{shown(path)}: exists and is not a folder; give a folder for the output")
    _check_writable(path, path)
    return path


def check_output_file(path: str | os.PathLike) -> Path:
    """`path` names a file that can be written (created, or replaced)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{shown(path)}: is a folder; give a file name for the output")
    _check_writable(path, path.parent)
    return path


def check_outside(out: str | os.PathLike, data: str | os.PathLike | None, what: str = "") -> None:
    """`out` (`what`, if it needs naming) is neither the data folder nor inside it: a run folder or
    pack written there would be read back as a class folder or an image (or replace one) by the
    next command on that data."""
    if data is None or not os.path.isdir(data):
        return
    written, read = Path(out).resolve(), Path(data).resolve()
    if written == read or read in written.parents:
        where = "the data folder" if written == read else f"inside the data folder {shown(data)}"
        raise UserError(f"{what + ' ' if what else ''}{shown(out)}: is {where}, where the next read of the data would take what is written "
                        "for a class or an image; write it elsewhere")


def check_cache_outside(*reads: str | os.PathLike | None) -> None:
    """The cache folder is outside each data folder `reads`: every command that runs TensorFlow
    makes its XLA folder there (xla_cache.py), which the next read of the data would take for a class."""
    from archbuilder.cache_folder import cache_dir

    for read in reads:
        check_outside(cache_dir(), read, "the cache folder (ARCHBUILDER_CACHE_DIR, else ~/.cache/archbuilder)")


def _check_writable(path: Path, folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # mkdir would fail on it with "File exists"
            raise UserError(f"{shown(path)}: cannot write: {shown(existing)} is a link to nothing (dangling, or a loop)")
        existing = existing.parent
    existing = existing if str(existing) else Path(".")
    if not existing.is_dir():
        raise UserError(f"{shown(path)}: cannot write: {shown(existing)} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=existing)
    except OSError as error:
        raise UserError(f"{shown(path)}: cannot write in {shown(existing)} ({error.strerror})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
