"""Writing a Keras model as a SavedModel folder, a LiteRT file or an ONNX file, atomically.

All three go through Keras's own `model.export`. For ONNX on the TensorFlow backend Keras calls
tf2onnx (with a patch of its own for NumPy 2), so Keras's export and tf2onnx are one converter;
going through Keras keeps the serving signature identical to the SavedModel's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

from archbuilder.atomic import atomic_dir, atomic_path
from archbuilder.errors import UserError, shown
from archbuilder.export import metadata as export_metadata
from archbuilder.keras.model_files import native_path
from archbuilder.runtime import quiet_loggers

T = TypeVar("T")
SUFFIXES = {"litert": ".tflite", "onnx": ".onnx"}
# ONNX's standard operator set that tf2onnx targets here; 17 is read by every current runtime.
ONNX_OPSET = 17


def default_out(model_path: Path, fmt: str, quantize: str | None) -> Path:
    """Beside the model: best.keras -> best.tflite, best-int8.tflite, best.onnx, best_saved_model/."""
    stem = model_path.parent / (model_path.stem + (f"-{quantize}" if quantize else ""))
    return Path(f"{stem}_saved_model") if fmt == "saved_model" else stem.with_name(stem.name + SUFFIXES[fmt])


def check_out(out: Path, fmt: str) -> None:
    """Refuse an --out that cannot hold the export before anything is converted or created."""
    if fmt == "saved_model":
        if out.exists() and not out.is_dir():
            raise UserError(f"{shown(out)}: is a file; a SavedModel is a folder (give a folder path with --out)")
        foreign = _not_saved_model_files(out) if out.is_dir() else []
        if not foreign and (out / "saved_model.pb").is_file() and not (out / "assets.extra" / "archbuilder.json").is_file():
            raise UserError(f"{shown(out)}: a SavedModel that archbuilder did not export (no assets.extra/archbuilder.json); "
                            "refusing to replace it, which would delete it (give a new or empty folder)")
        if foreign:
            # The export replaces the folder whole: only a folder holding nothing but a SavedModel.
            what = "a folder that is not a SavedModel" if not (out / "saved_model.pb").is_file() else \
                "a SavedModel folder holding other files too"
            raise UserError(f"{shown(out)}: {what} ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                            "refusing to replace it, which would delete them (give a new or empty folder)")
    else:
        if out.suffix.lower() != SUFFIXES[fmt]:
            raise UserError(f"{shown(out)}: a {fmt} export must end in {SUFFIXES[fmt]} (received: {shown(out.name)})")
        if out.is_dir():
            raise UserError(f"{shown(out)}: is a folder; give a file path ending in {SUFFIXES[fmt]}")
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the writer creates the missing folders below this one
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"{shown(out)}: cannot write there ({error.strerror or error})") from None


# What TensorFlow writes in a SavedModel folder (and archbuilder's metadata beside it). A folder
# holding only these is a SavedModel an export may replace; anything else in it is someone's file.
_SAVED_MODEL_FILES = {"saved_model.pb", "fingerprint.pb", "assets.extra/archbuilder.json"}


def _not_saved_model_files(folder: Path) -> list[str]:
    """Files and folders under `folder` that a SavedModel export does not write, sorted. Its
    `assets/` stays empty: an archbuilder model has no vocabulary or other asset files."""
    foreign = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        ours = (name in _SAVED_MODEL_FILES or name in ("variables", "assets", "assets.extra")
                or (name.startswith("variables/variables.") and path.is_file()))
        if not ours:
            foreign.append(shown(name))
    return foreign


def write_export(model, fmt: str, out: Path, metadata: dict, quantize: str | None = None,
                 calibration: np.ndarray | None = None, check: Callable[[Path], T] | None = None) -> T | None:
    """`calibration`: float32 model inputs (x/255) for int8's activation ranges. `check(path)` runs
    on the export written beside `out` before it takes `out`'s place, and its value is returned:
    an export that fails it (a runtime that cannot load it, say) never replaces an earlier one."""
    check = check or (lambda path: None)
    from archbuilder.export.runtimes import EXTRA_HINT

    needed = {"litert": "ai_edge_litert", "onnx": "tf2onnx"}.get(fmt)
    if needed is not None and importlib.util.find_spec(needed) is None:
        raise UserError(f"--format {fmt} needs the {needed} package: {EXTRA_HINT}")
    # Keras's ONNX export refuses a model that was loaded from a file and never called.
    model(np.zeros((1, *model.input_shape[1:]), np.float32), training=False)
    with _quiet_converters():
        if fmt == "saved_model":
            with atomic_dir(out) as tmp:
                with native_path(tmp) as writable:
                    model.export(str(writable), format="tf_saved_model", verbose=False)
                    export_metadata.write_saved_model_metadata(tmp, metadata)
                return check(tmp)
        if fmt == "litert":
            data = _litert_bytes(model, quantize, calibration)
            with atomic_path(out) as tmp:
                tmp.write_bytes(export_metadata.tflite_with_metadata(data, metadata))
                return check(tmp)
        if fmt == "onnx":
            from archbuilder.export.onnx_gaps import onnx_convertible_graph

            with atomic_path(out) as tmp:
                with native_path(tmp) as writable, onnx_convertible_graph():
                    model.export(str(writable), format="onnx", verbose=False, opset_version=ONNX_OPSET)
                    export_metadata.add_onnx_metadata(writable, metadata)
                return check(tmp)
        raise ValueError(f"unknown export format {fmt!r}")  # the CLI checks the name: a programming error


def _litert_bytes(model, quantize: str | None, calibration: np.ndarray | None) -> bytes:
    import tensorflow as tf

    options: dict = {}
    if quantize == "float16":
        # Weights stored as float16, computed in float32: half the size, ~float32 accuracy.
        options = {"optimizations": [tf.lite.Optimize.DEFAULT], "target_spec": {"supported_types": [tf.float16]}}
    elif quantize == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 needs calibration inputs")

        def representative():
            for image in calibration:
                yield [image[None]]

        # Integer-only kernels for every op; the file keeps float32 input and output (it quantizes
        # and dequantizes at its edges), so it is called exactly like the float32 file.
        options = {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative,
                   "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}}
    from archbuilder.runtime import native_stderr_quiet

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        with native_stderr_quiet():  # the quantizer prints its settings from C++; errors still raise
            model.export(str(path), format="litert", verbose=False, **options)
        return path.read_bytes()


@contextlib.contextmanager
def _quiet_converters() -> Iterator[None]:
    """tf2onnx and the TFLite converter log every step at INFO through Python logging and absl;
    Keras's NumPy-2 patch of tf2onnx probes `np.object`, which NumPy answers with a FutureWarning."""
    with quiet_loggers("tf2onnx", "absl", "tensorflow"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield
