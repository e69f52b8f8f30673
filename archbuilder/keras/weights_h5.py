"""Keras 2 HDF5 files (`.h5`): read their weights by layer name, and write Keras's `.h5` format.

A Keras 2 `.h5` file is either a whole model (`model.save("x.h5")`: the weights live under
`model_weights/`, the architecture in the `model_config` attribute) or a weights file
(`model.save_weights("w.h5")`: one group per layer at the top level). In both, a layer group
lists its arrays in the `weight_names` attribute, and the parent lists the groups in
`layer_names`.

We read only those arrays, with h5py, and assign them to the layer of the same name in a model
built from a spec. The stored `model_config` is never deserialized, so code that a stranger's
file could carry (a `Lambda` layer's function) is never run.

    model, report = open_weights_with_spec("ResNet50.h5", "architectures/resnet50.yaml")
    print(report.format())  # archbuilder.keras.weights picks this reader for a Keras 2 file
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from archbuilder.atomic import atomic_path
from archbuilder.errors import UserError
from archbuilder.file_kinds import suffix
from archbuilder.hdf5_files import open_hdf5
from archbuilder.runtime import quiet_loggers

if TYPE_CHECKING:  # keras is imported lazily: `validate` must not pay for TensorFlow
    import keras
    import numpy as np


@dataclass(frozen=True)
class ShapeMismatch:
    """A layer present on both sides whose weights differ in number or shape."""

    layer: str
    expected: tuple[tuple[int, ...], ...]  # the model's weight shapes, in the model's order
    found: tuple[tuple[int, ...], ...]  # the file's weight shapes, in the file's order

    def __str__(self) -> str:
        return f"{self.layer}: model expects {_shapes(self.expected)}, file has {_shapes(self.found)}"


@dataclass
class WeightLoadReport:
    """What happened when a `.h5` file's weights were assigned by layer name.

    Only layers that hold weights count: activations, additions and the like have nothing to load,
    and Keras 2 gave unnamed layers automatic names (`activation_12`) that need not match ours.
    """

    source: str
    matched: list[str] = field(default_factory=list)
    missing_in_file: list[str] = field(default_factory=list)  # model layers the file lacks
    not_in_model: list[str] = field(default_factory=list)  # file layers the model lacks
    shape_mismatches: list[ShapeMismatch] = field(default_factory=list)
    method: str = "by name"  # or "by structure", for Keras 3 files (weights_keras3.py)

    @property
    def complete(self) -> bool:
        """True when every weighted layer on both sides was matched and loaded."""
        return not (self.missing_in_file or self.not_in_model or self.shape_mismatches)

    def format(self) -> str:
        total = len(self.matched) + len(self.missing_in_file) + len(self.shape_mismatches)
        lines = [f"{self.source}: loaded weights for {len(self.matched)} of {total} layers {self.method}"]
        if self.method == "by name" and not self.matched and (self.missing_in_file or self.shape_mismatches):
            lines[0] += " (no layer fits: was the file saved from another network or naming scheme?)"
        if self.missing_in_file:
            lines.append(f"missing in the file ({len(self.missing_in_file)}), left as initialized:")
            lines += [f"  {name}" for name in self.missing_in_file]
        if self.shape_mismatches:
            lines.append(f"different shapes ({len(self.shape_mismatches)}), left as initialized:")
            lines += [f"  {mismatch}" for mismatch in self.shape_mismatches]
        if self.not_in_model:
            lines.append(f"in the file but not in the model ({len(self.not_in_model)}), ignored:")
            lines += [f"  {name}" for name in self.not_in_model]
        return "\n".join(lines)


def load_h5_weights(model: "keras.Model", path: str | os.PathLike, strict: bool = False) -> WeightLoadReport:
    """Assign the weights stored in a Keras 2 `.h5` file to `model`'s layers of the same names.

    Layers whose weights are missing or differ in shape keep their current values and are named
    in the report. With `strict=True` any such difference is a `UserError` and nothing is loaded.
    """
    stored = read_h5_weights(path)
    report = WeightLoadReport(source=str(path))
    assignments: list[tuple[object, "np.ndarray"]] = []
    model_layers = {}
    for layer in _weighted_layers(model):
        model_layers[layer.name] = layer
        if layer.name not in stored:
            report.missing_in_file.append(layer.name)
            continue
        pairs = _pair_weights(layer.weights, stored[layer.name])
        if pairs is None:
            report.shape_mismatches.append(
                ShapeMismatch(
                    layer.name,
                    tuple(tuple(int(d) for d in w.shape) for w in layer.weights),
                    tuple(tuple(a.shape) for _, a in stored[layer.name]),
                )
            )
            continue
        report.matched.append(layer.name)
        assignments += pairs
    report.not_in_model = [name for name in stored if name not in model_layers]
    if strict and not report.complete:
        raise UserError(report.format() + "\n--strict: the file does not fit the model; nothing was loaded")
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype, copy=False))
    return report


def read_h5_weights(path: str | os.PathLike) -> dict[str, list[tuple[str, "np.ndarray"]]]:
    """Return {layer name: [(weight name, array), ...]} for every layer that stores weights.

    Weight names are the short ones (`gamma`, `kernel`), in the file's order. Works on whole-model
    files and on `save_weights` files; reads nothing but the weight arrays.
    """
    import numpy as np

    path = Path(path)
    with open_hdf5(path) as handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        layer_names = _string_list_attr(root, "layer_names")
        if layer_names is None:
            hint = ""
            if "layers" in handle or "_layer_checkpoint_dependencies" in handle:
                hint = " It looks like a Keras 3 `.weights.h5` file; load it with keras's `model.load_weights`."
            raise UserError(f"{path}: not a Keras HDF5 model or weights file (no `layer_names` attribute).{hint}")
        stored: dict[str, list[tuple[str, np.ndarray]]] = {}
        for layer_name in layer_names:
            if layer_name not in root:
                raise UserError(f"{path}: layer `{layer_name}` is listed in `layer_names` but has no group")
            group = root[layer_name]
            weights = []
            for weight_name in _string_list_attr(group, "weight_names") or []:
                if weight_name not in group:
                    raise UserError(f"{path}: weight `{weight_name}` of layer `{layer_name}` is listed but missing")
                weights.append((_short_weight_name(weight_name), np.asarray(group[weight_name])))
            if weights:
                stored[layer_name] = weights
        return stored


def save_h5(model: "keras.Model", path: str | os.PathLike) -> Path:
    """Write `model` in Keras's `.h5` format (architecture and weights), atomically.

    Keras 3 still writes the legacy HDF5 layout for a `.h5` name, so Keras 2 tools and
    `load_h5_weights` read the file back.
    """
    path = Path(path)
    if suffix(path) != ".h5":
        raise UserError(f"{path}: an HDF5 model file must end in .h5 (received: {path.name})")
    from archbuilder.keras.initializers import make_portable

    make_portable(model)  # Keras 2 readers know GlorotUniform, not archbuilder's initializer
    # Keras logs (through absl) that .h5 is legacy; writing it is what the user asked for.
    with quiet_loggers("absl"), atomic_path(path, suffix=".h5") as tmp:  # Keras accepts only the lower-case suffix
        model.save(tmp, include_optimizer=False)
        _store_keras2_config(tmp)
    return path


def keras2_note(model: "keras.Model", path: Path) -> str | None:
    """A line for the user when tf_keras (Keras 2) cannot rebuild the `.h5` that `save_h5` wrote
    for `model`: which layers, and what still reads them. None when it can. (Keras 3's own .h5
    reader knows no more classes than Keras 2's: LayerScale and the GELU object fail there too.)"""
    from archbuilder.keras.keras2_config import keras2_missing

    missing = keras2_missing({"config": model.get_config()})
    if not missing:
        return None
    kinds = "; ".join(f"{what} ({', '.join(names[:3])}" + (f" and {len(names) - 3} more)" if len(names) > 3 else ")")
                      for what, names in missing.items())
    return (f"note: {path}: Keras 2 (tf_keras) cannot rebuild these layers as they are: {kinds}. The .keras "
            f"format keeps them; archbuilder reads this file's weights with the spec (--spec, --weights)")


def _store_keras2_config(path: Path) -> None:
    """Replace the file's Keras 3 `model_config` with its Keras 2 form (keras2_config.py), so
    `tf_keras.models.load_model` reads the file; Keras 3 reads that form too (for the layers both
    Kerases have: see keras2_note)."""
    import json

    import h5py

    from archbuilder.keras.keras2_config import keras2_model_config

    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        handle.attrs["model_config"] = json.dumps(keras2_model_config(config)).encode("utf-8")


def _weighted_layers(model: "keras.Model") -> Iterable[object]:
    return [layer for layer in model.layers if layer.weights]


def _pair_weights(variables: Sequence[object], stored: list[tuple[str, "np.ndarray"]]):
    """Pair a layer's variables with the file's arrays, or return None if they do not fit.

    Pairs by short name (`gamma` with `gamma`) when both sides name the same set, else by
    position, which is how Keras 2 itself loaded files. Either way every shape must agree.
    """
    if len(variables) != len(stored):
        return None
    by_name = {name: array for name, array in stored}
    names = [_short_weight_name(v.name) for v in variables]
    if len(by_name) == len(stored) and sorted(names) == sorted(by_name):
        arrays = [by_name[name] for name in names]
    else:
        arrays = [array for _, array in stored]
    pairs = list(zip(variables, arrays))
    if any(tuple(int(d) for d in v.shape) != tuple(a.shape) for v, a in pairs):
        return None
    return pairs


def _short_weight_name(name: str) -> str:
    # Keras 2 stores `bn_conv1/gamma:0`; Keras 3 variables are named `gamma`.
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def _string_list_attr(group, name: str) -> list[str] | None:
    """Read a list-of-strings attribute, including Keras's chunked form (`name0`, `name1`, ...)."""
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _shapes(shapes: tuple[tuple[int, ...], ...]) -> str:
    return "[" + ", ".join("(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")" for s in shapes) + "]"
