"""The SIGNS HDF5 layout that the notebook's `load_dataset` reads.

    train_signs.h5: train_set_x (N, 64, 64, 3) uint8, train_set_y (N,) int64, list_classes (K,)
    test_signs.h5:  test_set_x, test_set_y, list_classes

One file may hold both splits. `list_classes` is int64 when every class name is an integer (as in
SIGNS), otherwise UTF-8 strings. Labels are indices into `list_classes`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archbuilder.atomic import atomic_write_with
from archbuilder.data.folder import check_class_names
from archbuilder.errors import UserError, shown
from archbuilder.hdf5_files import open_hdf5

SPLITS = ("train", "test")


@dataclass(frozen=True)
class LabelledImages:
    """Images as uint8 (N, H, W, C) with int64 labels indexing `class_names`."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]

    def subset(self, indices: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.x[indices], self.y[indices], self.class_names)

    def __len__(self) -> int:
        return len(self.y)


def write_signs_h5(path: str | os.PathLike, splits: dict[str, LabelledImages]) -> None:
    """Write `{"train": ..., "test": ...}` (either or both) atomically in the SIGNS layout."""
    import h5py

    names = next(iter(splits.values())).class_names
    if any(images.class_names != names for images in splits.values()):
        raise ValueError("all splits must share class names")
    if all(name.isdigit() for name in names):
        list_classes = np.asarray([int(name) for name in names], dtype=np.int64)
    else:
        list_classes = np.asarray(names, dtype=h5py.string_dtype("utf-8"))

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as handle:
            for split, images in splits.items():
                handle.create_dataset(f"{split}_set_x", data=images.x.astype(np.uint8))
                handle.create_dataset(f"{split}_set_y", data=images.y.astype(np.int64))
            handle.create_dataset("list_classes", data=list_classes)

    atomic_write_with(path, write)


def read_signs_h5(path: str | os.PathLike) -> dict[str, LabelledImages]:
    """Read every split present; a file without one complete split is an error naming what's there."""
    path = Path(path)
    with open_hdf5(path) as handle:
        present = sorted(handle.keys())
        if "list_classes" not in handle:
            raise UserError(
                f"{path}: no 'list_classes' dataset; expected the SIGNS layout "
                f"(train_set_x, train_set_y, list_classes and/or test_set_x, test_set_y); "
                f"found: {', '.join(present) or 'nothing'}"
            )
        names = check_class_names([_class_name(value) for value in np.asarray(handle["list_classes"][:]).ravel()],
                                  f"{shown(path)}: list_classes")
        splits = {}
        for split in SPLITS:
            keys = (f"{split}_set_x", f"{split}_set_y")
            if keys[0] not in handle and keys[1] not in handle:
                continue
            for key in keys:
                if key not in handle:
                    raise UserError(f"{path}: has {split}_set_* but no '{key}' dataset")
            x = np.asarray(handle[keys[0]][:])
            y = np.asarray(handle[keys[1]][:]).ravel()
            splits[split] = _checked(path, split, x, y, names)
    if not splits:
        raise UserError(
            f"{path}: no image datasets; expected train_set_x/train_set_y or test_set_x/test_set_y "
            f"(the SIGNS layout); found: {', '.join(present)}"
        )
    return splits


def _class_name(value) -> str:
    if isinstance(value, bytes):
        # Bytes that are not UTF-8 are kept as surrogates (as a file name's are), for
        # check_class_names to refuse and shown() to show as `\xff`.
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _checked(path: Path, split: str, x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> LabelledImages:
    if x.ndim == 3:  # grayscale (N, H, W)
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UserError(f"{path}: {split}_set_x has shape {x.shape}; expected (N, height, width, 1 or 3)")
    if len(x) != len(y):
        raise UserError(f"{path}: {split}_set_x has {len(x)} images but {split}_set_y has {len(y)} labels")
    if len(x) == 0:
        raise UserError(f"{path}: {split}_set_x holds no images")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= len(names))):
        raise UserError(
            f"{path}: {split}_set_y must hold class indices 0..{len(names) - 1} (list_classes has "
            f"{len(names)} entries)"
        )
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.size and float(x.max()) <= 1.0:
            raise UserError(f"{path}: {split}_set_x looks normalized already (max <= 1); store 0-255 pixels")
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return LabelledImages(x, y.astype(np.int64), names)
