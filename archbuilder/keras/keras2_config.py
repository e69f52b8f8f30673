"""A Keras 3 functional model's config, rewritten as Keras 2 (tf-keras) writes and reads it.

Keras 3 still writes `.h5` files in the legacy HDF5 layout, but the `model_config` it stores uses
Keras 3's vocabulary, and Keras 2's `load_model` stops at the first difference
("Unrecognized keyword arguments: ['batch_shape']"). `save_h5` stores this rewrite instead, so
`tf_keras.models.load_model("x.h5")` rebuilds the model and loads its weights. The differences:

| Keras 3                                        | Keras 2                                   |
|------------------------------------------------|-------------------------------------------|
| InputLayer `batch_shape`, `optional`           | `batch_input_shape`                       |
| `dtype: {class_name: DTypePolicy, ...}`        | `dtype: "float32"`                        |
| objects with `module` and `registered_name`    | `{class_name, config}`                    |
| initializer configs with `input_axes`, ...     | only the arguments Keras 2 takes          |
| Dense `quantization_config`                    | (none)                                    |
| inbound nodes `{args: [tensor...], kwargs}`    | `[[layer, node, tensor, {}], ...]`        |
| `input_layers: [name, 0, 0]`                   | `[[name, 0, 0]]`                          |
| LayerNormalization `rms_scaling: false`        | (none: Keras 2 never scales by the RMS)   |
| Resizing `pad_to_aspect_ratio`, `fill_mode`, `fill_value`, `antialias`, `data_format` at their defaults | (none: what Keras 2 always does) |

Some layers have no Keras 2 form (`keras2_missing` names them): tf_keras cannot rebuild such a
file as it is; archbuilder still reads its weights with the spec.

archbuilder's `GlorotUniformTF1` (the notebook's TF 1 draw) is not a Keras 2 class: it becomes
Keras 2's `GlorotUniform` with the same seed, the distribution it reproduces. Initializers only
matter for a new model; the file's weights are what a loaded model holds.
"""

from __future__ import annotations

import copy
from typing import Any

# Arguments of Keras 2's initializers; Keras 3 added others (input_axes, output_axes, ...).
_INITIALIZER_ARGUMENTS = {"seed", "mean", "stddev", "minval", "maxval", "scale", "mode", "distribution",
                          "gain", "value"}
_KERAS3_ONLY = {"quantization_config", "lora_rank", "lora_alpha"}
_RENAMED_CLASSES = {"GlorotUniformTF1": "GlorotUniform"}
# Arguments Keras 3 added to a layer class that Keras 2 lacks: dropped where they hold the value
# Keras 2 always uses; any other value stays, and Keras 2 refuses it rather than computing otherwise.
_KERAS3_ADDED = {
    "LayerNormalization": {"rms_scaling": False},
    "Resizing": {"pad_to_aspect_ratio": False, "fill_mode": "constant", "fill_value": 0.0, "antialias": False,
                 "data_format": "channels_last"},
}
# What archbuilder's primitives build that Keras 2 has no class or function for (layer_scale,
# gelu_tanh, hard_swish), or names another function (Keras 2's hard_sigmoid is clip(0.2x + 0.5),
# Keras 3's relu6(x + 3) / 6). tests/test_primitives.py runs every primitive's .h5 in tf_keras,
# so a name missing here, or listed here but rebuilt faithfully, fails there.
_KERAS2_LACKS_LAYERS = {"LayerScale": "LayerScale"}
_KERAS2_LACKS_ACTIVATIONS = {
    "Gelu": "the tanh form of GELU",
    "hard_silu": "hard swish",
    "hard_sigmoid": "Keras 3's hard_sigmoid, which Keras 2 defines as another function",
}


def keras2_model_config(config: dict) -> dict:
    """`{"class_name": "Functional", "config": {...}}` from Keras 3, as Keras 2 reads it."""
    config = copy.deepcopy(config)
    body = config["config"]
    body["layers"] = [_layer(layer) for layer in body["layers"]]
    for key in ("input_layers", "output_layers"):
        if body.get(key) and not isinstance(body[key][0], list):
            body[key] = [body[key]]
    return config


def keras2_missing(config: dict) -> dict[str, list[str]]:
    """The layers of a Keras 3 model config that Keras 2 cannot rebuild as they are (it fails to
    load them, or computes something else): their names, by what Keras 2 lacks."""
    missing: dict[str, list[str]] = {}
    for layer in config["config"]["layers"]:
        activation = layer["config"].get("activation")  # Activation's, or a Dense's or conv's own
        name = activation.get("class_name") if isinstance(activation, dict) else activation
        what = _KERAS2_LACKS_LAYERS.get(layer["class_name"]) or _KERAS2_LACKS_ACTIVATIONS.get(name)
        if str(layer.get("module", "")).startswith("archbuilder"):  # ours (token_layers.py): Keras 2 knows none
            what = f"archbuilder's {layer['class_name']}"
        if what:
            missing.setdefault(what, []).append(layer["config"]["name"])
    return missing


def _layer(layer: dict) -> dict:
    settings = {key: _value(value) for key, value in layer["config"].items() if key not in _KERAS3_ONLY}
    for key, keras2_value in _KERAS3_ADDED.get(layer["class_name"], {}).items():
        if key in settings and settings[key] == keras2_value and type(settings[key]) is type(keras2_value):
            del settings[key]
    if layer["class_name"] == "InputLayer":
        settings["batch_input_shape"] = settings.pop("batch_shape", settings.get("batch_input_shape"))
        settings.pop("optional", None)
    return {
        "class_name": layer["class_name"],
        "config": settings,
        "name": layer["name"],
        "inbound_nodes": [_node(node) for node in layer.get("inbound_nodes", [])],
    }


def _value(value: Any) -> Any:
    """A layer argument: Keras 3's serialized objects as Keras 2's."""
    if not (isinstance(value, dict) and "class_name" in value and "config" in value):
        return value
    if value["class_name"] == "DTypePolicy":
        return value["config"]["name"]
    class_name = _RENAMED_CLASSES.get(value["class_name"], value["class_name"])
    settings = value["config"]
    if value.get("module") == "keras.initializers" or class_name != value["class_name"]:
        settings = {key: item for key, item in settings.items() if key in _INITIALIZER_ARGUMENTS}
    return {"class_name": class_name, "config": {key: _value(item) for key, item in settings.items()}}


def _node(node: Any) -> Any:
    """`{"args": [...], "kwargs": {}}` -> `[[layer, node_index, tensor_index, {}], ...]`."""
    if not isinstance(node, dict):
        return node  # already Keras 2's form
    return [[*tensor["config"]["keras_history"], {}] for tensor in _tensors(node.get("args", []))]


def _tensors(value: Any) -> list[dict]:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return [value]
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in _tensors(item)]
    return []
