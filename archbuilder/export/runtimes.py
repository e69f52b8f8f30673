"""Running an exported model in its own runtime: TensorFlow's `saved_model.load`, LiteRT's
interpreter (`ai-edge-litert`), ONNX Runtime. Each takes float32 `x / 255` and returns the
class probabilities, as the Keras model does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from archbuilder.errors import UserError
from archbuilder.export import metadata as export_metadata

EXPORT_SUFFIXES = {".tflite": "litert", ".onnx": "onnx"}
EXTRA_HINT = "install archbuilder's export extra (pip install -e '.[export]'; ./setup.sh does)"
RUNTIME_NAMES = {"saved_model": "TensorFlow SavedModel", "litert": "LiteRT", "onnx": "ONNX Runtime"}


def export_kind(path: str | Path) -> str | None:
    """'saved_model', 'litert' or 'onnx' for an exported model's path; None for anything else."""
    path = Path(path)
    if path.is_dir():
        return "saved_model" if (path / "saved_model.pb").is_file() else None
    return EXPORT_SUFFIXES.get(path.suffix.lower())


@dataclass
class ExportedModel:
    kind: str
    path: Path
    metadata: dict
    input_shape: tuple[int, int, int]
    classes: int
    _run: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    @property
    def runtime(self) -> str:
        return RUNTIME_NAMES[self.kind]

    def class_names(self) -> tuple[str, ...]:
        names = self.metadata.get("class_names")
        if isinstance(names, list) and len(names) == self.classes and all(isinstance(n, str) for n in names):
            return tuple(names)
        return tuple(str(i) for i in range(self.classes))

    def predict(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities for float32 inputs (N, H, W, C) already divided by 255."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        outputs = [self._run(x[start:start + batch_size]) for start in range(0, len(x), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, self.classes), np.float32)

    def predict_uint8(self, x_uint8: np.ndarray, batch_size: int = 32) -> np.ndarray:
        # Bit-identical to training's tf.cast(x, float32) / 255.0: both round one float32 division.
        return self.predict(x_uint8.astype(np.float32) / np.float32(255.0), batch_size)


def open_exported(path: str | Path) -> ExportedModel:
    """Open an export for inference; a file that is not one is a UserError naming it."""
    path = Path(path)
    kind = export_kind(path)
    if kind is None:
        raise UserError(f"{path}: not an exported model (a .tflite or .onnx file, or a SavedModel folder)")
    if not path.exists():
        raise UserError(f"{path}: no such model file")
    from archbuilder.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()  # every path reads images (or the model) with TensorFlow
    opener = {"saved_model": _open_saved_model, "litert": _open_litert, "onnx": _open_onnx}[kind]
    try:
        return opener(path)
    except UserError:
        raise
    except ModuleNotFoundError as error:
        raise UserError(f"{path}: running a {RUNTIME_NAMES[kind]} model needs {error.name}: {EXTRA_HINT}") from None
    except Exception as error:  # each runtime has its own exception types for a bad file
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path}: not a loadable {RUNTIME_NAMES[kind]} model ({message[:300]})") from None


def _image_shape(path: Path, shape: Any) -> tuple[int, int, int]:
    dims = list(shape)
    if len(dims) != 4 or any(not isinstance(d, (int, np.integer)) or d <= 0 for d in dims[1:]):
        raise UserError(f"{path}: the model's input is {dims}; expected fixed-size images (batch, height, width, channels)")
    return tuple(int(d) for d in dims[1:])


def _open_saved_model(path: Path) -> ExportedModel:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise UserError(f"{path}: the SavedModel has no serving_default signature")
    function = loaded.signatures["serving_default"]
    inputs = function.structured_input_signature[1]
    if len(inputs) != 1 or len(function.structured_outputs) != 1:
        raise UserError(f"{path}: expected one input and one output in serving_default")
    (input_name, spec), = inputs.items()
    (output_name, output_spec), = function.structured_outputs.items()

    def run(x: np.ndarray) -> np.ndarray:
        return function(**{input_name: tf.constant(x)})[output_name].numpy()

    return ExportedModel("saved_model", path, export_metadata.read_saved_model_metadata(path),
                         _image_shape(path, [0 if d is None else d for d in spec.shape.as_list()]),
                         int(output_spec.shape[-1]), run)


def _open_litert(path: Path) -> ExportedModel:
    from ai_edge_litert.interpreter import Interpreter

    from archbuilder.runtime import native_stderr_quiet

    data = path.read_bytes()
    with native_stderr_quiet():  # LiteRT announces its XNNPACK delegate on stderr
        interpreter = Interpreter(model_content=data)
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    current = {"batch": None}

    def run(x: np.ndarray) -> np.ndarray:
        if current["batch"] != len(x):  # the file is made for batch 1; resize once per batch size
            interpreter.resize_tensor_input(input_detail["index"], [len(x), *x.shape[1:]])
            with native_stderr_quiet():
                interpreter.allocate_tensors()
            current["batch"] = len(x)
        interpreter.set_tensor(input_detail["index"], x)
        if current.setdefault("invoked", False):
            interpreter.invoke()
        else:
            with native_stderr_quiet():
                interpreter.invoke()
            current["invoked"] = True
        return np.array(interpreter.get_tensor(output_detail["index"]))

    return ExportedModel("litert", path, export_metadata.read_tflite_metadata(data),
                         _image_shape(path, input_detail["shape"]), int(output_detail["shape"][-1]), run)


def _open_onnx(path: Path) -> ExportedModel:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only; it warns about unused initializers at INFO/WARNING
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (model_input,), (model_output,) = session.get_inputs(), session.get_outputs()

    def run(x: np.ndarray) -> np.ndarray:
        return session.run([model_output.name], {model_input.name: x})[0]

    shape = [0 if not isinstance(d, int) else d for d in model_input.shape]
    return ExportedModel("onnx", path, export_metadata.read_onnx_metadata(session),
                         _image_shape(path, shape), int(model_output.shape[-1]), run)
