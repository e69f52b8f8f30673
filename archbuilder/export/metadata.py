"""archbuilder's metadata (class names, input shape, preprocessing) inside each export format.

- SavedModel: `assets.extra/archbuilder.json`, the folder TensorFlow Serving leaves alone.
- LiteRT: a `metadata` entry named `archbuilder.json` of the flatbuffer, which interpreters skip.
- ONNX: the model's `metadata_props` key `archbuilder.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from archbuilder.errors import NOT_JSON
from archbuilder.keras.model_files import METADATA_ENTRY

SAVED_MODEL_ENTRY = Path("assets.extra") / METADATA_ENTRY


def write_saved_model_metadata(folder: Path, metadata: dict) -> None:
    (folder / SAVED_MODEL_ENTRY).parent.mkdir(exist_ok=True)
    (folder / SAVED_MODEL_ENTRY).write_text(json.dumps(metadata, indent=2), encoding="utf-8")


def read_saved_model_metadata(folder: Path) -> dict:
    return _parse((folder / SAVED_MODEL_ENTRY).read_bytes()) if (folder / SAVED_MODEL_ENTRY).is_file() else {}


def tflite_with_metadata(model_bytes: bytes, metadata: dict) -> bytes:
    """The same LiteRT model with one more buffer holding the metadata, named in `metadata`."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_ENTRY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_tflite_metadata(model_bytes: bytes) -> dict:
    """Read without unpacking the whole model: only the metadata table and its one buffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name() == METADATA_ENTRY.encode():
            return _parse(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}


def add_onnx_metadata(path: Path, metadata: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_ENTRY, json.dumps(metadata)
    onnx.save(model, str(path))


def parse_metadata(text: str | None) -> dict:
    """An `archbuilder.json` entry's text (None when the file has none), e.g. an `.onnx` file's
    `metadata_props` value as ONNX Runtime reads it."""
    return _parse(text.encode("utf-8")) if text else {}


def _parse(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except NOT_JSON:
        return {}
    return value if isinstance(value, dict) else {}
