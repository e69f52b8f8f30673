"""Running an exported model in its own runtime: TensorFlow's `saved_model.load`, LiteRT's
interpreter (`ai-edge-litert`), ONNX Runtime. Each takes float32 `x / 255` and returns the
class probabilities, as the Keras model does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from archbuilder.errors import UserError, shown
from archbuilder.export import metadata as export_metadata

EXPORT_SUFFIXES = {".tflite": "litert", ".onnx": "onnx"}
EXTRA_HINT = "install archbuilder's export extra (pip install -e '.[export]'; ./setup.sh does)"
RUNTIME_NAMES = {"saved_model": "TensorFlow SavedModel", "litert": "LiteRT", "onnx": "ONNX Runtime"}


def export_kind(path: str | Path) -> str | None:
    """'saved_model', 'litert' or 'onnx' for an exported model's path; None for anything else.
    Every folder is taken for a SavedModel (the only model that is a folder); opening one without
    saved_model.pb says so."""
    path = Path(path)
    if path.is_dir():
        return "saved_model"
    return EXPORT_SUFFIXES.get(path.suffix.lower())


@dataclass
class ExportedModel:
    kind: str
    path: Path
    metadata: dict
    input_shape: tuple[int, int, int]
    classes: int
    _run: Callable[[np.ndarray], Any] = field(repr=False)
    # A model with named outputs (a spec's `outputs:`): name -> per-image shape; `_run` then gives a
    # dict and `predict` each output's raw values. None: one class-probability vector.
    outputs: dict[str, tuple] | None = None

    @property
    def runtime(self) -> str:
        return RUNTIME_NAMES[self.kind]

    def class_names(self) -> tuple[str, ...]:
        names = self.metadata.get("class_names")  # checked when the file was opened
        if isinstance(names, list) and len(names) == self.classes:
            return tuple(names)
        return tuple(str(i) for i in range(self.classes))

    def predict(self, x: np.ndarray, batch_size: int = 32):
        """Probabilities for float32 inputs (N, H, W, C) already divided by 255; for named outputs
        a dict of each one's values."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        outputs = [self._run_batch(x[start:start + batch_size]) for start in range(0, len(x), batch_size)]
        if self.outputs is not None:
            return {name: np.concatenate([batch[name] for batch in outputs]) if outputs else
                    np.zeros((0, *shape), np.float32) for name, shape in self.outputs.items()}
        return np.concatenate(outputs) if outputs else np.zeros((0, self.classes), np.float32)

    def predict_uint8(self, x_uint8: np.ndarray, batch_size: int = 32) -> np.ndarray:
        # Bit-identical to training's tf.cast(x, float32) / 255.0: both round one float32 division.
        return self.predict(x_uint8.astype(np.float32) / np.float32(255.0), batch_size)

    def _run_batch(self, x: np.ndarray):
        from archbuilder.export.runtime_process import ChildDied

        try:
            output = self._run(x)
            output = {name: np.asarray(v) for name, v in output.items()} if self.outputs is not None else np.asarray(output)
        except UserError:
            raise
        except ChildDied as error:
            raise UserError(f"{shown(self.path)}: not a loadable {self.runtime} model ({error})") from None
        except Exception as error:  # the runtime's own error for a file it loaded but cannot run
            raise UserError(f"{shown(self.path)}: {self.runtime} could not run the model ({_first_line(error)})") from None
        if self.outputs is not None:
            for name, shape in self.outputs.items():
                if output[name].shape != (len(x), *shape):
                    raise UserError(f"{shown(self.path)}: the model's output {name} has shape {list(output[name].shape)} "
                                    f"for {len(x)} images; expected {[len(x), *shape]}")
            return {name: output[name].astype(np.float32, copy=False) for name in self.outputs}
        if output.shape != (len(x), self.classes):
            raise UserError(f"{shown(self.path)}: the model's output has shape {list(output.shape)} for {len(x)} "
                            f"images; expected ({len(x)}, {self.classes}), one probability per class")
        return output.astype(np.float32, copy=False)


def open_exported(path: str | Path, overrides: Iterable[str] = (), strict: bool = False,
                  max_memory: int | None = None) -> ExportedModel:
    """Open an export for inference; a file that is not one is a UserError naming it.
    `overrides`, `strict`, `max_memory` (--set, --strict, --max-memory) are refused, as for a .keras."""
    from archbuilder.keras.model_files import refuse_irregular, refuse_spec_options

    path = Path(path)
    kind = export_kind(path)
    if kind is None:
        raise UserError(f"{shown(path)}: not an exported model (a .tflite or .onnx file, or a SavedModel folder)")
    if not path.exists():
        raise UserError(f"{shown(path)}: no such model file")
    refuse_irregular(path)
    refuse_spec_options(path, overrides, strict, max_memory, what="an export")
    if kind == "saved_model" and not (path / "saved_model.pb").is_file():
        raise UserError(f"{shown(path)}: is a folder, not a SavedModel (no saved_model.pb in it; a run folder holds best.keras)")
    if kind != "saved_model" and path.stat().st_size == 0:
        raise UserError(f"{shown(path)}: not a loadable {RUNTIME_NAMES[kind]} model (the file is empty)")
    from archbuilder.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()  # every path reads images (or the model) with TensorFlow
    try:
        return _open_saved_model(path) if kind == "saved_model" else _open_in_child(kind, path)
    except UserError:
        raise
    except ModuleNotFoundError as error:
        raise UserError(f"{shown(path)}: running a {RUNTIME_NAMES[kind]} model needs {error.name}: {EXTRA_HINT}") from None
    except Exception as error:  # each runtime has its own exception types for a bad file
        raise UserError(f"{shown(path)}: not a loadable {RUNTIME_NAMES[kind]} model ({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _checked_metadata(path: Path, metadata: dict) -> dict:
    from archbuilder.keras.model_files import check_metadata

    check_metadata(metadata, path)
    return metadata


def _one_each(path: Path, inputs: int, outputs: int, names: list[str] | None = None, metadata: dict | None = None) -> None:
    """One input, and one output or several named ones: those of a spec's `outputs:`, which
    archbuilder's export lists in the file's metadata (a file of several outputs it did not write
    says nothing of what they are, and is refused as before)."""
    declared = (metadata or {}).get("outputs")
    named = (names is not None and outputs > 1 and isinstance(declared, list) and len(set(names)) == outputs
             and sorted(map(str, declared)) == sorted(names))
    if inputs != 1 or (outputs != 1 and not named):
        raise UserError(f"{shown(path)}: the model has {inputs} input(s) and {outputs} output(s); expected one "
                        "input (the images) and one output (the class probabilities)")


def _image_shape(path: Path, shape: Any) -> tuple[int, int, int]:
    """(height, width, channels) of a (batch, height, width, channels) input; unknown sizes
    (None, 0 or -1) are refused, as is a channels-first (NCHW) input."""
    dims = list(shape)
    if len(dims) != 4 or any(not isinstance(d, (int, np.integer)) or d <= 0 for d in dims[1:]):
        raise UserError(f"{shown(path)}: the model's input is {dims}; expected fixed-size images (batch, height, width, channels)")
    if dims[3] not in (1, 3):
        layout = " (channels first, NCHW?)" if dims[1] in (1, 3) else ""
        raise UserError(f"{shown(path)}: the model's input is {[int(d) for d in dims]}{layout}; expected "
                        "(batch, height, width, channels) with 1 (grayscale) or 3 (RGB) channels last")
    return tuple(int(d) for d in dims[1:])


def _declared(path: Path, input_shape: tuple[int, int, int], declared_bytes: int) -> None:
    from archbuilder.keras.model_files import check_declared_memory

    check_declared_memory(path, [1, *input_shape], declared_bytes)


def _open_saved_model(path: Path) -> ExportedModel:
    import tensorflow as tf

    from archbuilder.keras.model_files import native_path

    with native_path(path) as readable:
        loaded = tf.saved_model.load(str(readable))
    if "serving_default" not in loaded.signatures:
        raise UserError(f"{shown(path)}: the SavedModel has no serving_default signature")
    function = loaded.signatures["serving_default"]
    inputs = function.structured_input_signature[1]
    metadata = _checked_metadata(path, export_metadata.read_saved_model_metadata(path))
    _one_each(path, len(inputs), len(function.structured_outputs), list(function.structured_outputs), metadata)
    (input_name, spec), = inputs.items()
    shape = _image_shape(path, [0 if d is None else d for d in spec.shape.as_list()])
    if len(function.structured_outputs) > 1:
        named = _spec_order({name: _per_image(path, name, output.shape.as_list())
                             for name, output in function.structured_outputs.items()}, metadata)
        _declared(path, shape, 4 * (int(np.prod(shape)) + sum(int(np.prod(s)) for s in named.values())))
        return ExportedModel("saved_model", path, metadata, shape, 0,
                             lambda x: {k: v.numpy() for k, v in function(**{input_name: tf.constant(x)}).items()}, named)
    (output_name, output_spec), = function.structured_outputs.items()
    classes = int(output_spec.shape[-1])
    # The signature declares only its input and output: those bound what it takes for one image.
    _declared(path, shape, 4 * (int(np.prod(shape)) + classes))

    def run(x: np.ndarray) -> np.ndarray:
        return function(**{input_name: tf.constant(x)})[output_name].numpy()

    return ExportedModel("saved_model", path, metadata, shape, classes, run)


def _per_image(path: Path, name: str, shape: list) -> tuple:
    """A named output's shape for one image: fixed sizes after the batch axis."""
    dims = list(shape)[1:]
    if not dims or any(not isinstance(d, (int, np.integer)) or d <= 0 for d in dims):
        raise UserError(f"{shown(path)}: the model's output {name} is {list(shape)}; expected fixed sizes after the batch")
    return tuple(int(d) for d in dims)


_QUANTIZED = ("uint8", "int8")


def _open_in_child(kind: str, path: Path) -> ExportedModel:
    """A `.tflite` or `.onnx` file, run in a child process (runtime_process.py): their runtimes
    can crash on a damaged file, and then only the child dies."""
    import importlib.util

    module = {"litert": "ai_edge_litert", "onnx": "onnxruntime"}[kind]
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(name=module)
    from archbuilder.export.runtime_process import ChildDied, RuntimeProcess

    try:
        child = RuntimeProcess(kind, path)
    except ChildDied as error:
        raise UserError(f"{shown(path)}: not a loadable {RUNTIME_NAMES[kind]} model ({error})") from None
    details = child.details
    metadata = _checked_metadata(path, _child_metadata(kind, path, details))
    _one_each(path, len(details["inputs"]), len(details["outputs"]), [o["name"] for o in details["outputs"]], metadata)
    (given,), outputs = details["inputs"], details["outputs"]
    # A dynamic size (-1 in a .tflite's shape_signature, a symbolic ONNX size) would run at a
    # placeholder size (LiteRT's is 1x1): refused.
    shape = _image_shape(path, given["shape_signature"] or given["shape"])
    if len(outputs) > 1:
        return _named_in_child(kind, path, child, shape, given, outputs, details, metadata)
    (output,) = outputs
    classes = output["shape"][-1] if output["shape"] else -1
    if classes <= 0:
        raise UserError(f"{shown(path)}: the model's output is {output['shape']}; expected (batch, classes)")
    declared = details["declared_bytes"] if kind == "litert" else _onnx_declared_bytes(path.read_bytes())
    _declared(path, shape, int(declared))
    quantize_input, dequantize_output = _input_converter(path, given), _output_converter(path, output)

    def run(x: np.ndarray) -> np.ndarray:
        return dequantize_output(child.run(quantize_input(x)))

    return ExportedModel(kind, path, metadata, shape, int(classes), run)


def _named_in_child(kind: str, path: Path, child, shape, given: dict, outputs: list[dict], details: dict,
                    metadata: dict) -> ExportedModel:
    """A `.tflite` or `.onnx` of named outputs (a spec's `outputs:`): each one's values by name."""
    named = _spec_order({o["name"]: _per_image(path, o["name"], o["shape"]) for o in outputs}, metadata)
    declared = details["declared_bytes"] if kind == "litert" else _onnx_declared_bytes(path.read_bytes())
    _declared(path, shape, int(declared))
    quantize_input = _input_converter(path, given)
    dequantize = [_output_converter(path, o) for o in outputs]

    def run(x: np.ndarray) -> dict:
        values = child.run(quantize_input(x))
        if not isinstance(values, list) or len(values) != len(outputs):
            raise ValueError(f"the model gave {len(values) if isinstance(values, list) else 1} outputs, "
                             f"not the {len(outputs)} it declares")
        return {o["name"]: convert(v) for o, convert, v in zip(outputs, dequantize, values)}

    return ExportedModel(kind, path, metadata, shape, 0, run, named)


def _spec_order(named: dict, metadata: dict) -> dict:
    """`named` in the spec's order of its outputs, which the export's metadata lists (the runtimes
    give them sorted by name: predict on an export said `label, mask` where the .keras said
    `mask, label`); as given if the metadata lists other names."""
    declared = metadata.get("outputs") if isinstance(metadata, dict) else None
    if not isinstance(declared, list) or sorted(map(str, declared)) != sorted(named):
        return named
    return {name: named[name] for name in declared}


def _child_metadata(kind: str, path: Path, details: dict) -> dict:
    if kind == "litert":
        return export_metadata.read_tflite_metadata(path.read_bytes())
    return export_metadata.parse_metadata(details.get("metadata", {}).get(export_metadata.METADATA_ENTRY))


def _input_converter(path: Path, tensor: dict) -> Callable[[np.ndarray], np.ndarray]:
    """float32 x/255 as the model takes it: a full-integer model's uint8/int8 input is quantized
    with its own scale and zero point, q = round(x / scale) + zero_point (LiteRT's rounding,
    half away from zero), clipped to the type's range."""
    dtype = tensor["dtype"]
    if dtype == "float32":
        return lambda x: x
    if dtype == "float16":
        return lambda x: x.astype(np.float16)
    if dtype in _QUANTIZED:
        scale, zero_point = _quantization(path, tensor, "input")
        limits = np.iinfo(dtype)

        def quantize(x: np.ndarray) -> np.ndarray:
            scaled = x.astype(np.float64) / scale
            rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
            return np.clip(rounded, limits.min, limits.max).astype(dtype)

        return quantize
    raise UserError(f"{shown(path)}: the model's input is {dtype}; expected float32, or uint8/int8 with a scale and zero point")


def _output_converter(path: Path, tensor: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Probabilities as float32: a full-integer model's output dequantized, (q - zero_point) * scale."""
    dtype = tensor["dtype"]
    if dtype in ("float32", "float16"):
        return lambda y: y.astype(np.float32)
    if dtype in _QUANTIZED:
        scale, zero_point = _quantization(path, tensor, "output")
        return lambda y: ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale))
    raise UserError(f"{shown(path)}: the model's output is {dtype}; expected float32, or uint8/int8 with a scale and zero point")


def _quantization(path: Path, tensor: dict, which: str) -> tuple[float, int]:
    scale, zero_point = tensor["scale"], tensor["zero_point"]
    if not (np.isfinite(scale) and scale > 0):
        raise UserError(f"{shown(path)}: the model's {which} is {tensor['dtype']} without a quantization scale "
                        f"(received: scale {scale}); cannot map probabilities to it")
    return float(scale), int(zero_point)


def _onnx_declared_bytes(data: bytes) -> int:
    """Every tensor of an ONNX graph at batch 1, as ONNX's shape inference sees it: weights and
    each node's output. Run here, not in the child: `import onnx` costs the child ~2 s (ml_dtypes,
    which TensorFlow has already loaded here), and only on a file ONNX Runtime accepted, which
    ran the same operators' inference functions on it."""
    import onnx

    from archbuilder.export.runtime_process import shape_values

    graph = onnx.shape_inference.infer_shapes(onnx.load_model_from_string(data)).graph
    total = sum(len(t.raw_data) or 4 * shape_values(t.dims) for t in graph.initializer)
    for value in (*graph.input, *graph.value_info, *graph.output):
        kind = value.type.tensor_type
        try:
            size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type)).itemsize
        except (KeyError, TypeError, ValueError):
            size = 4
        total += size * shape_values(d.dim_value for d in kind.shape.dim)
    return total
