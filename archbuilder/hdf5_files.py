"""Opening HDF5 files (SIGNS datasets, Keras 2 weights) with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

from archbuilder.errors import UserError, shown
from archbuilder.file_kinds import file_kind


def open_hdf5(path: str | os.PathLike):
    """An open, read-only `h5py.File`; a missing or non-HDF5 file is a UserError naming it."""
    import h5py

    path = Path(path)
    if not path.is_file():  # a pipe would be waited on for ever: refused as a device or socket is
        kind = file_kind(path)
        raise UserError(f"{shown(path)}: " + (f"not a file ({kind})" if kind else "no such file"))
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path}: not a readable HDF5 file ({error})") from None
