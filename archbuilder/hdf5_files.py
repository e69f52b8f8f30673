"""Opening HDF5 files (SIGNS datasets, Keras 2 weights) with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

from archbuilder.errors import UserError, shown
from archbuilder.file_kinds import file_kind


def require_file(path: Path) -> None:
    """`path` is a regular file, or a UserError says it is missing or what it is instead (a pipe
    would be waited on for ever: refused before it is opened, as a device or a folder is)."""
    if not path.is_file():
        kind = file_kind(path)
        raise UserError(f"{shown(path)}: " + (f"not a file ({kind})" if kind else "no such file"))


def open_hdf5(path: str | os.PathLike):
    """An open, read-only `h5py.File`; a missing or non-HDF5 file is a UserError naming it."""
    import h5py

    path = Path(path)
    require_file(path)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path}: not a readable HDF5 file ({error})") from None
