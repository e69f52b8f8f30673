"""The front door for `--weights FILE`: picks the reader a weights file needs.

Keras 3 files (`x.keras`, `x.weights.h5`, or any HDF5 file laid out as Keras 3 writes one) are
mapped by structure (weights_keras3.py); Keras 2 `.h5` files are loaded by layer name
(weights_h5.py). Both return the same kind of report, and both honour `strict`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from archbuilder.errors import UserError
from archbuilder.keras.weights_h5 import WeightLoadReport, load_h5_weights
from archbuilder.keras.weights_keras3 import is_keras3_file, load_keras3_weights

if TYPE_CHECKING:
    import keras


def load_weights_file(model: "keras.Model", path: str | os.PathLike, strict: bool = False) -> WeightLoadReport:
    """Assign the weights in `path` to `model` and say what matched."""
    if is_keras3_file(path) or _laid_out_as_keras3(path):
        return load_keras3_weights(model, path, strict=strict)
    return load_h5_weights(model, path, strict=strict)


def open_weights_with_spec(
    path: str | os.PathLike,
    spec_path: str | os.PathLike,
    overrides: Sequence[str] = (),
    strict: bool = False,
    max_memory: int | None = None,
) -> tuple["keras.Model", WeightLoadReport]:
    """Build the spec's model and load a weights file of either kind into it."""
    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec

    checked = load_checked_spec(spec_path, overrides=list(overrides), max_memory=max_memory)
    model = build_model(checked.spec)
    return model, load_weights_file(model, path, strict=strict)


def _laid_out_as_keras3(path: str | os.PathLike) -> bool:
    """An HDF5 file with Keras 3's `layers/` group and none of Keras 2's `layer_names` (a renamed `.weights.h5`)."""
    from archbuilder.hdf5_files import open_hdf5

    if not Path(path).is_file():
        return False
    try:
        with open_hdf5(path) as handle:
            root = handle["model_weights"] if "model_weights" in handle else handle
            return "layers" in handle and "layer_names" not in root.attrs and "layer_names0" not in root.attrs
    except (UserError, OSError):  # not HDF5 at all: the Keras 2 reader says so in its own words
        return False
