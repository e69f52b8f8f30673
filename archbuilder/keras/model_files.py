"""Reading and writing model files, with the metadata that makes them usable on their own.

A `.keras` file written here carries, beside Keras's own entries, `archbuilder.json`: the class
names and the preprocessing, so `predict MODEL IMAGE` can name classes without the run folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable

from archbuilder.atomic import atomic_path
from archbuilder.errors import NOT_JSON, Remedy, UserError, json_reason, shown
from archbuilder.file_kinds import file_kind, is_h5, is_keras

METADATA_ENTRY = "archbuilder.json"
PREPROCESSING = "decode, bilinear antialiased resize to the input size, round to uint8, x/255"
FLOAT_INPUTS = ("float32", "float16", "bfloat16", "float64")  # what a model fed x/255 (float32) may take


def save_model_file(model, path: str | os.PathLike, metadata: dict) -> None:
    """`model.save` (weights, config and optimizer state) plus metadata, written atomically.

    The config names only Keras's own objects (`make_portable`), so plain `keras.models.load_model`
    reads the file in a Python that has never imported archbuilder.
    """
    from archbuilder.keras.initializers import make_portable

    make_portable(model)
    with atomic_path(path, suffix=".keras") as tmp:  # Keras accepts only the lower-case suffix
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_ENTRY, json.dumps(metadata, indent=2))


def read_model_metadata(path: str | os.PathLike) -> dict:
    """The archbuilder metadata of a `.keras` file, or {} when it has none (a Keras 2 `.h5` file,
    a `.keras` file saved elsewhere). Metadata that is there is checked as strictly as a spec."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_ENTRY not in archive.namelist():
                return {}
            metadata = json.loads(archive.read(METADATA_ENTRY))
    except (OSError, zipfile.BadZipFile):
        return {}
    except NOT_JSON as error:
        raise UserError(f"{shown(path)}: {METADATA_ENTRY} is not JSON ({json_reason(error)})") from None
    check_metadata(metadata, path)
    return metadata


def check_metadata(metadata, path) -> None:
    """The metadata of a model file (a `.keras` or an export) has the types archbuilder writes;
    class names are distinct, since a prediction names each probability by its class."""
    from archbuilder.data.folder import class_name_problem

    def refuse(what: str, received) -> None:
        text = json.dumps(received)
        raise UserError(f"{shown(path)}: {METADATA_ENTRY}: {what} (received: {text[:60]})")

    if not isinstance(metadata, dict):
        refuse("must be a JSON object", metadata)
    names = metadata.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        refuse("class_names must be a list of class names", names)
    for name in names or ():  # printed by predict and evaluate, carried into exports: one line of text each
        if problem := class_name_problem(name):
            refuse(f"the class name '{shown(name)}' {problem}", names)
    if names is not None and len(set(names)) != len(names):
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        refuse(f"class_names must be distinct; {twice!r} names two classes", names)
    shape = metadata.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and all(type(d) is int and d > 0 for d in shape)):
        refuse("input_shape must be a list of positive integers", shape)


def refuse_spec_options(path, overrides: Iterable[str] = (), strict: bool = False, max_memory: int | None = None,
                        what: str = "a .keras file") -> None:
    """overrides/strict/max_memory (--set/--strict/--max-memory) shape the model built from a spec;
    a model file alone has none to shape: refuse them, never ignore them."""
    given = [name for name, value in (("overrides", tuple(overrides)), ("strict", strict), ("max_memory", max_memory))
             if value]
    if given:
        raise UserError(f"{shown(path)}: ", Remedy(
            ", ".join(f"{{{name}}}" for name in given) + " applies with {spec} (a model built from a spec, the file's "
            f"weights read into it); {what} alone carries its own architecture"))


# Preparing an image for the model holds, per value of its input, besides what the network itself
# declares: the resize's float32 result, its rounding and its clipping (three float32 tensors that
# may be alive at once, 12 bytes; data/images.py), the uint8 image in the decoded batch and in the
# array it is copied to (2), and the model's float32 x/255 (4): 18 bytes. A damaged .tflite that
# declared a 32 x 14,155,808 x 3 input passed the check without them and took 20 GB to resize
# one photo (the kernel's OOM killer ended it): 18 x 1.36e9 values is 22.8 GiB, now refused.
PREPROCESSING_BYTES_PER_VALUE = 18


def check_declared_memory(path, input_shape, declared_bytes: int) -> None:
    """Refuse a model file whose network, as the file declares it, needs more memory for one image
    than the limit (ARCHBUILDER_MAX_MEMORY, else 16 GiB), before any image is resized to its input:
    a file may declare a 3,000,000 x 3,000,000 input as easily as a spec could."""
    from archbuilder.plan.size_guard import LIMIT_VARIABLE, format_bytes, memory_limit

    limit = memory_limit()
    declared_bytes += PREPROCESSING_BYTES_PER_VALUE * math.prod(d or 1 for d in input_shape)  # one image
    if declared_bytes > limit:
        raise UserError(
            f"{shown(path)}: the model's input {list(input_shape)} needs an estimated {format_bytes(declared_bytes)} "
            f"for one image, more than the limit of {format_bytes(limit)}; raise it with {LIMIT_VARIABLE} "
            "if this machine really has the memory"
        )


def open_model_file(
    path: str | os.PathLike,
    spec_path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    strict: bool = False,
    on_report: Callable[[str], None] | None = None,
    max_memory: int | None = None,
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
        raise UserError(f"{shown(path)}: no such model file")
    refuse_irregular(path)
    if path.is_dir():
        raise UserError(f"{shown(path)}: is a folder, not a model file (a run folder holds best.keras)")
    if is_h5(path) or (spec_path is not None and is_keras(path)):
        return _open_weights(path, spec_path, overrides, strict, on_report, max_memory)
    refuse_spec_options(path, overrides, strict, max_memory)
    if not is_keras(path):
        raise UserError(f"{shown(path)}: unsupported model file type {path.suffix or '(none)'!r}",
                        Remedy("; expected .keras, or .h5 with {spec}"))
    if not zipfile.is_zipfile(path):
        raise UserError(f"{shown(path)}: not a Keras model file (not a .keras zip archive; truncated or another format)")
    # These import TensorFlow quietly and register the archbuilder objects older files name.
    import archbuilder.keras.graph_walk  # noqa: F401  (a deep model's graph sorted without recursion)
    import archbuilder.keras.initializers  # noqa: F401
    import archbuilder.keras.legacy_layers  # noqa: F401
    import archbuilder.keras.token_layers  # noqa: F401  (ViT's class token, position embedding, ...)
    import keras

    try:
        with native_path(path, ".keras") as readable:
            return keras.saving.load_model(readable, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, KeyError, OSError, ... for bad files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise UserError(
                f"{shown(path)}: refusing to load: it contains a Lambda layer (arbitrary code); "
                "only files without one are loaded (safe_mode)"
            ) from None
        raise UserError(f"{shown(path)}: not a loadable Keras model ({message[:300]})") from None


def refuse_irregular(path: Path) -> None:
    """A model file that is a named pipe (opening it waits for a writer for ever), a device or a
    socket is refused before anything opens it; folders are the callers' to judge."""
    kind = file_kind(path)
    if kind is not None and kind != "a folder":
        raise UserError(f"{shown(path)}: not a model file ({kind})")


@contextlib.contextmanager
def native_path(path: Path, suffix: str | None = None):
    """`path`, or a link to it whose name native code can open: TensorFlow, Keras, tf2onnx and
    ONNX take names as UTF-8 text (a name with bytes that are not UTF-8 reaches Python as
    surrogates and fails there), and Keras reads only names ending in lower-case `.keras`."""
    path = Path(path)
    try:
        str(path).encode("utf-8")
        encodable = True
    except UnicodeEncodeError:
        encodable = False
    if encodable and (suffix is None or path.name.endswith(suffix)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="archbuilder-") as folder:
        link = Path(folder) / ("model" + (suffix if suffix is not None else _encodable(path.suffix)))
        os.symlink(path.resolve(), link)
        yield link


def _encodable(text: str) -> str:
    return os.fsencode(text).decode("utf-8", "replace").replace("\ufffd", "_")


def _open_weights(path: Path, spec_path, overrides, strict: bool, on_report, max_memory: int | None = None):
    if spec_path is None:
        raise UserError(f"{shown(path)}: an .h5 file holds weights that are read into a model built from a spec",
                        Remedy("; give the architecture with {spec}, e.g. the spec file architectures/resnet50.yaml"))
    from archbuilder.keras.weights import open_weights_with_spec

    model, report = open_weights_with_spec(path, spec_path, overrides, strict=strict, max_memory=max_memory)
    if on_report is not None:
        on_report(report.format())
    return model


def model_output(model):
    """`model.output`: one tensor, a dict of named ones, or a list of several. A Sequential model
    loaded from a file leaves `output` undefined ("has never been called"), but not `outputs`."""
    try:
        return model.output
    except AttributeError:
        outputs = list(model.outputs)
        return outputs[0] if len(outputs) == 1 else outputs


def check_one_output(model, label: str) -> None:
    """One output tensor, or named ones (a spec's `outputs:`); several unnamed outputs say nothing
    of which is the class vector, and are refused as an export of them is."""
    output = model_output(model)
    if isinstance(output, (list, tuple)):
        raise UserError(f"{label}: the model has {len(model.inputs)} input(s) and {len(output)} output(s); expected "
                        "one output (the class probabilities), or named ones (a spec's outputs:)")


def named_output_shapes(model) -> dict[str, tuple] | None:
    """Each named output's shape (batch axis first) for a model whose outputs are a dict (a spec's
    `outputs:`), in the spec's order; None for a model with one output. A loaded model reports
    `output_shape` as a list (sorted by name), so the dict of output tensors is read instead."""
    output = model_output(model)
    if not isinstance(output, dict):
        return None
    return {name: tuple(tensor.shape) for name, tensor in output.items()}


def model_classes(model, path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from the file's metadata, else "0", "1", ... for each output unit. A model with
    named outputs (a dict) has no one class vector: its names only as stored, if any."""
    if named_output_shapes(model) is not None:
        return tuple(read_model_metadata(path).get("class_names") or ())
    units = model.output_shape[-1]
    names = read_model_metadata(path).get("class_names")
    if names and len(names) == units:
        return tuple(names)
    return tuple(str(i) for i in range(units))


def model_input_shape(model, path: str | os.PathLike) -> tuple[int, int, int]:
    """(height, width, channels) the model takes; a model that doesn't take fixed-size images, or
    whose estimated memory for one image exceeds the limit, is an error."""
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or any(d is None for d in shape[1:]):
        raise UserError(f"{shown(path)}: the model's input is {shape}; expected fixed-size images (batch, height, width, channels)")
    from archbuilder.data.images import check_channels

    check_channels(shape[3], f"{shown(path)}: the model")
    dtype = str(model.inputs[0].dtype)
    if dtype not in FLOAT_INPUTS:  # an int8 input failed inside Keras's call; uint8 took x/255 as 0 or 1
        raise UserError(f"{shown(path)}: the model's input is {dtype}; archbuilder feeds it images as float32 x/255, "
                        f"so its input must be {', '.join(FLOAT_INPUTS[:-1])} or {FLOAT_INPUTS[-1]}")
    check_declared_memory(path, shape, _inference_bytes(model))
    return tuple(shape[1:])


def _inference_bytes(model) -> int:
    """plan/size_guard.py's estimate for one image, from the Keras model: 4 bytes for every weight
    and for every value each layer outputs (the input included)."""
    import math

    values = model.count_params()
    for layer in model.layers:
        try:
            outputs = layer.output
        except (AttributeError, ValueError):  # a layer called twice has no single output
            continue
        for output in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
            values += math.prod(d or 1 for d in tuple(output.shape)[1:])
    return 4 * values
