"""LiteRT's interpreter and ONNX Runtime in a child process, so that a `.tflite` or `.onnx` file
can never take ours down.

Both runtimes trust the files they read: a few changed bytes in a `.tflite` (an operator's
options, a tensor's shape or buffer) make LiteRT's C++ read or write out of bounds, and the
process dies of SIGSEGV or SIGABRT without a word (3 of 1,600 mutated exports did, issue 20);
fuzzed `.onnx` files have done the same to ONNX Runtime (microsoft/onnxruntime#4349, #4585).
No check of a file's structure can rule that out, since the damage is in what the values mean.
So the runtime lives in a child (`python -I`, importing only NumPy and the runtime, a fraction of
a second); the parent sends it inputs and reads outputs over a pipe, and when the child dies the
parent reports the file as not loadable, naming the signal.

The protocol is length-prefixed frames: a JSON header and raw array bytes. Nothing is pickled:
a child that a hostile file has taken over still cannot make the parent run code.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

_FRAME = struct.Struct(">IQ")  # header length, payload length
_DTYPES = {"float32", "float16", "float64", "uint8", "int8", "int16", "int32", "int64", "bool"}
_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the archbuilder package
_BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from archbuilder.export.runtime_process import child_main; child_main()"
RUNTIME_NAMES = {"litert": "LiteRT", "onnx": "ONNX Runtime"}


class ChildDied(Exception):
    """The interpreter's process ended without answering (a native crash, or killed)."""


class RuntimeProcess:
    """One `.tflite` (kind "litert") or `.onnx` file loaded in a child's runtime. `details`
    describes its inputs, outputs, metadata and (LiteRT) the bytes its tensors declare; `run` invokes it
    (after `details` was checked)."""

    def __init__(self, kind: str, path: Path):
        show_logs = os.environ.get("ARCHBUILDER_TF_LOGS") == "1"
        self.kind = kind
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOTSTRAP, str(_ROOT), kind, os.fsencode(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None if show_logs else subprocess.DEVNULL,
        )
        self.details: dict = self._receive()[0]
        if "error" in self.details:
            message = self.details["error"]
            self.close()
            raise ValueError(message)

    def run(self, x: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """The output for inputs `x`; a model of several outputs gives a list, in `details`' order."""
        try:
            _send(self._process.stdin, {"op": "run"}, x)
        except (BrokenPipeError, OSError):
            raise self._died() from None
        header, array = self._receive()
        if "error" in header:
            raise ValueError(header["error"])
        if "count" not in header:
            return array
        # several outputs: one frame each follows; never more than the model declared
        count = header["count"]
        if type(count) is not int or not 1 < count <= len(self.details.get("outputs", ())):
            raise self._died()
        arrays = [self._receive()[1] for _ in range(count)]
        if any(a is None for a in arrays):
            raise self._died()
        return arrays

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.close()  # the child's loop ends at end of input
            except OSError:
                pass
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __del__(self):  # the parent's exit closes the pipe too; this only tidies up earlier
        try:
            self.close()
        except Exception:
            pass

    def _receive(self) -> tuple[dict, np.ndarray | None]:
        try:
            return _read_frame(self._process.stdout)
        except (EOFError, OSError, ValueError, struct.error):
            raise self._died() from None

    def _died(self) -> ChildDied:
        self._process.kill()  # it may be alive but talking nonsense; then it must stop too
        code = self._process.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return ChildDied(f"{RUNTIME_NAMES[self.kind]} crashed on it ({name})")
        return ChildDied(f"{RUNTIME_NAMES[self.kind]} stopped on it (exit status {code})")


def _send(stream: BinaryIO, header: dict, array: np.ndarray | None = None) -> None:
    payload = b""
    if array is not None:
        array = np.ascontiguousarray(array)
        header = {**header, "dtype": array.dtype.name, "shape": list(array.shape)}
        payload = array.tobytes()
    text = json.dumps(header).encode("utf-8")
    stream.write(_FRAME.pack(len(text), len(payload)))
    stream.write(text)
    stream.write(payload)
    stream.flush()


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = stream.read(min(left, 1 << 24))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: BinaryIO) -> tuple[dict, np.ndarray | None]:
    header_size, payload_size = _FRAME.unpack(_read_exactly(stream, _FRAME.size))
    header = json.loads(_read_exactly(stream, header_size))
    if not isinstance(header, dict):
        raise ValueError("malformed frame")
    payload = _read_exactly(stream, payload_size)
    if "dtype" not in header:
        return header, None
    if header["dtype"] not in _DTYPES or not all(type(d) is int and d >= 0 for d in header["shape"]):
        raise ValueError("malformed array")
    return header, np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"])


# ---- the child ------------------------------------------------------------------------------


def child_main() -> None:
    """Load argv[3] in the runtime named by argv[2], describe it, then run what the parent sends."""
    # The protocol owns the original stdout; anything native code prints goes to stderr.
    output = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    source = sys.stdin.buffer
    runtime = {"litert": _LiteRT, "onnx": _OnnxRuntime}[sys.argv[2]]
    try:
        with open(os.fsencode(sys.argv[3]), "rb") as handle:  # read here: the runtimes want UTF-8 names
            loaded = runtime(handle.read())
        _send(output, loaded.describe())
    except Exception as error:  # the file's own fault, as the runtime words it
        _send(output, {"error": _first_line(error)})
        return
    while True:
        try:
            _, x = _read_frame(source)
        except EOFError:
            return
        try:
            arrays = loaded.run(x)
        except Exception as error:
            _send(output, {"error": _first_line(error)})
            continue
        if len(arrays) == 1:
            _send(output, {}, arrays[0])
        else:  # a count, then one frame per output
            _send(output, {"count": len(arrays)})
            for array in arrays:
                _send(output, {}, array)


def _tensor(name, shape, signature, dtype, scale: float = 0.0, zero_point: int = 0) -> dict:
    return {"name": str(name), "shape": shape, "shape_signature": signature, "dtype": dtype,
            "scale": float(scale), "zero_point": int(zero_point)}


class _LiteRT:
    def __init__(self, data: bytes):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=data)
        self.batch = None
        # Outputs by their names in the serving signature (a model with named outputs); the
        # tensors' own names ("StatefulPartitionedCall_1:0") say nothing. Sorted by name, in the
        # order get_output_details lists them otherwise.
        self.outputs = self.interpreter.get_output_details()
        self.names = {}
        signatures = self.interpreter.get_signature_list()
        if len(self.outputs) > 1 and len(signatures) == 1:
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            by_index = {detail["index"]: name for name, detail in runner.get_output_details().items()}
            if set(by_index) == {d["index"] for d in self.outputs}:
                self.outputs = sorted(self.outputs, key=lambda d: by_index[d["index"]])
                self.names = by_index

    def describe(self) -> dict:
        def tensor(detail: dict) -> dict:
            scale, zero_point = detail.get("quantization", (0.0, 0))
            return _tensor(self.names.get(detail["index"], detail.get("name", "")), [int(d) for d in detail["shape"]],
                           [int(d) for d in detail.get("shape_signature", detail["shape"])],
                           np.dtype(detail["dtype"]).name, scale, zero_point)

        declared = 0  # every tensor at its stored shape: the interpreter's arena and constants at batch 1
        for detail in self.interpreter.get_tensor_details():
            declared += shape_values(detail["shape"]) * np.dtype(detail["dtype"]).itemsize
        return {"inputs": [tensor(d) for d in self.interpreter.get_input_details()],
                "outputs": [tensor(d) for d in self.outputs], "declared_bytes": declared}

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        (given,) = self.interpreter.get_input_details()
        if self.batch != x.shape[0]:  # the file is made for batch 1; resize once per batch size
            self.interpreter.resize_tensor_input(given["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.batch = x.shape[0]
        self.interpreter.set_tensor(given["index"], x)
        self.interpreter.invoke()
        return [np.array(self.interpreter.get_tensor(output["index"])) for output in self.outputs]


class _OnnxRuntime:
    def __init__(self, data: bytes):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only; it warns about unused initializers at INFO/WARNING
        self.session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def describe(self) -> dict:
        def tensor(value) -> dict:
            shape = [d if isinstance(d, int) else -1 for d in (value.shape or [])]  # symbolic sizes as -1
            kind = value.type[len("tensor("):-1] if value.type.startswith("tensor(") else value.type
            return _tensor(value.name, shape, shape, {"float": "float32", "double": "float64"}.get(kind, kind))

        metadata = self.session.get_modelmeta().custom_metadata_map
        return {"inputs": [tensor(v) for v in self.session.get_inputs()],
                "outputs": [tensor(v) for v in self.session.get_outputs()],
                "metadata": dict(metadata)}

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        (given,) = self.session.get_inputs()
        return [np.asarray(y) for y in self.session.run(None, {given.name: x})]


def shape_values(shape) -> int:
    """Values in a tensor of `shape`, unknown sizes (0, -1) counted as 1."""
    count = 1
    for dimension in shape:
        count *= max(int(dimension), 1)
    return count


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
