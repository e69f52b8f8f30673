"""Reading and writing model files, with the metadata that makes them usable on their own.

A `.keras` file written here carries, beside Keras's own entries, `archbuilder.json`: the class
names and the preprocessing, so `predict MODEL IMAGE` can name classes without the run folder.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable

from archbuilder.atomic import atomic_path
from archbuilder.errors import UserError

METADATA_ENTRY = "archbuilder.json"
PREPROCESSING = "decode, bilinear antialiased resize to the input size, round to uint8, x/255"


def save_model_file(model, path: str | os.PathLike, metadata: dict) -> None:
    """`model.save` (weights, config and optimizer state) plus metadata, written atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_ENTRY, json.dumps(metadata, indent=2))


def read_model_metadata(path: str | os.PathLike) -> dict:
    """The archbuilder metadata of a `.keras` file, or {} when it has none."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_ENTRY in archive.namelist():
                return json.loads(archive.read(METADATA_ENTRY))
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError):
        pass
    return {}


def open_model_file(
    path: str | os.PathLike,
    spec_path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    strict: bool = False,
    on_report: Callable[[str], None] | None = None,
):
    """Load a model file for evaluation or prediction; every failure is a UserError naming the file.

    `.keras` files load with `safe_mode=True`: a file whose layers would run arbitrary code
    (a `Lambda`) is refused. A Keras 2 `.h5` file (a whole model, like the notebook's
    ResNet50.h5, or `save_weights`) needs `spec_path`: the spec's model is built and the file's
    weight arrays are loaded into it by layer name, without deserializing anything else from the
    file; `on_report` receives the text saying which layers matched. With `spec_path`, a Keras 3
    `.keras` (e.g. a keras.applications network) or `.weights.h5` file is read the same way, its
    weights mapped onto the spec's model by structure (weights_keras3.py).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such model file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a model file (a run folder holds best.keras)")
    if path.suffix in H5_SUFFIXES or (spec_path is not None and path.suffix == ".keras"):
        return _open_weights(path, spec_path, overrides, strict, on_report)
    if path.suffix != ".keras":
        raise UserError(f"{path}: unsupported model file type {path.suffix or '(none)'!r}; expected .keras, or .h5 with --spec")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a Keras model file (not a .keras zip archive; truncated or another format)")
    # archbuilder.keras.initializers imports TensorFlow quietly and registers archbuilder's Keras objects.
    import archbuilder.keras.initializers  # noqa: F401
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, KeyError, OSError, ... for bad files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise UserError(
                f"{path}: refusing to load: it contains a Lambda layer (arbitrary code); "
                "only files without one are loaded (safe_mode)"
            ) from None
        raise UserError(f"{path}: not a loadable Keras model ({message[:300]})") from None


H5_SUFFIXES = (".h5", ".hdf5")


def _open_weights(path: Path, spec_path, overrides, strict: bool, on_report):
    if spec_path is None:
        raise UserError(
            f"{path}: an .h5 file holds weights that are read into a model built from a spec; "
            "give the architecture with --spec SPEC (e.g. --spec architectures/resnet50.yaml)"
        )
    from archbuilder.keras.weights import open_weights_with_spec

    model, report = open_weights_with_spec(path, spec_path, overrides, strict=strict)
    if on_report is not None:
        on_report(report.format())
    return model


def model_classes(model, path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from the file's metadata, else "0", "1", ... for each output unit."""
    units = model.output_shape[-1]
    names = read_model_metadata(path).get("class_names")
    if names and len(names) == units:
        return tuple(names)
    return tuple(str(i) for i in range(units))


def model_input_shape(model, path: str | os.PathLike) -> tuple[int, int, int]:
    """(height, width, channels) the model takes; a model that doesn't take fixed-size images is an error."""
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or any(d is None for d in shape[1:]):
        raise UserError(f"{path}: the model's input is {shape}; expected fixed-size images (batch, height, width, channels)")
    from archbuilder.data.images import check_channels

    check_channels(shape[3])
    return tuple(shape[1:])
