"""Keras 3 model files (`.keras`, `.weights.h5`): their weights mapped onto a spec's model by structure.

A keras.applications network and the same network written as a spec hold the same weights under
different layer names (`Conv1` here, `stem_conv` there), so names cannot pair them. Structure
can: both are graphs of weighted layers (convolutions, batch norms, dense, ...) joined through
weightless ones (activations, padding, additions). We reduce each graph to its weighted layers,
each with the weighted layers it reads from, and put both in one canonical topological order,
which depends only on that reduced graph and the weights' shapes (not on names, nor on the order
in which either model was written). The i-th weighted layer of the file then pairs with the i-th
of the model; every pair must have the same inputs (under the pairing) and the same shapes.

A `.keras` file is a zip holding `config.json` (the graph, read here as JSON data) and
`model.weights.h5` (one group per layer, `layers/<class>_<n>/vars/<i>`, named in an attribute).
Neither is deserialized into Keras objects, so no code stored in the file runs. A bare
`.weights.h5` file has no graph: it is paired as Keras's own `model.load_weights` pairs it, the
n-th layer of each class in `model.layers` with the group `<class>_<n>`, shapes checked.

    model, report = open_weights_with_spec("ResNet50V2.keras", "architectures/imagenet/resnet50v2.yaml")
    print(report.format())  # open_weights_with_spec is in archbuilder.keras.weights
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from archbuilder.errors import NOT_JSON, Remedy, UserError, json_reason
from archbuilder.hdf5_files import require_file
from archbuilder.keras.weights_h5 import ShapeMismatch, WeightLoadReport, _shapes

if TYPE_CHECKING:  # imported lazily: `validate` must not pay for TensorFlow
    import keras
    import numpy as np

KERAS_SUFFIX = ".keras"
WEIGHTS_SUFFIX = ".weights.h5"
_CONFIG_ENTRY = "config.json"
_WEIGHTS_ENTRY = "model.weights.h5"
_MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a ResNet-152's config is ~1 MB; more is not a model config
_INPUT = "<input>"


def is_keras3_file(path: str | os.PathLike) -> bool:
    """True for the names Keras 3 writes: `x.keras` and `x.weights.h5`."""
    name = Path(path).name.lower()
    return name.endswith(KERAS_SUFFIX) or name.endswith(WEIGHTS_SUFFIX)


@dataclass(frozen=True)
class WeightedLayer:
    """One layer that holds weights, with the weighted layers (or model inputs) it reads from."""

    name: str
    shapes: tuple[tuple[int, ...], ...]
    inputs: frozenset[str]  # names of the nearest weighted layers upstream, or "<input>0", ...

    def describe(self) -> str:
        return f"`{self.name}` {_shapes(self.shapes)}"


@dataclass
class StoredModel:
    """What a Keras 3 file holds: its weighted layers in canonical order and their arrays."""

    source: str
    layers: list[WeightedLayer]
    arrays: dict[str, list["np.ndarray"]]
    groups: dict[str, str]  # HDF5 group (`conv2d_3`) -> layer name
    has_graph: bool  # False for a bare `.weights.h5`: no wiring to check


def read_keras3_file(path: str | os.PathLike) -> StoredModel:
    """Read a `.keras` or `.weights.h5` file's weighted layers and arrays; nothing is deserialized."""
    path = Path(path)
    require_file(path)
    if not zipfile.is_zipfile(path):
        if path.name.lower().endswith(KERAS_SUFFIX):
            raise UserError(f"{path}: not a Keras 3 model file (a .keras file is a zip archive; truncated or another format?)")
        return _read_bare_weights(path)  # `x.weights.h5`, or an HDF5 file of that layout by another name
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if _CONFIG_ENTRY not in names or _WEIGHTS_ENTRY not in names:
                raise UserError(
                    f"{path}: not a Keras 3 model file (its zip lacks {_CONFIG_ENTRY} or {_WEIGHTS_ENTRY})"
                )
            if archive.getinfo(_CONFIG_ENTRY).file_size > _MAX_CONFIG_BYTES:
                raise UserError(f"{path}: {_CONFIG_ENTRY} is over {_MAX_CONFIG_BYTES // 2**20} MiB; not a model config")
            config = _parse_json(path, archive.read(_CONFIG_ENTRY))
            graph = _graph_from_config(path, config)
            # In memory: h5py seeks back and forth, and a seek back in a zip member rereads it from the start.
            stored = _read_layer_groups(path, io.BytesIO(archive.read(_WEIGHTS_ENTRY)))
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable Keras 3 model file ({error})") from None
    unknown = [name for name in stored if name not in graph]
    if unknown:
        raise UserError(f"{path}: weights of layer `{unknown[0]}` are stored, but {_CONFIG_ENTRY} has no such layer")
    layers = reduce_to_weighted(graph, {name: _array_shapes(arrays) for name, (_, arrays) in stored.items()})
    return StoredModel(str(path), layers, {name: arrays for name, (_, arrays) in stored.items()},
                       {group: name for name, (group, _) in stored.items()}, has_graph=True)


def model_structure(model: "keras.Model") -> list[WeightedLayer]:
    """The model's weighted layers in canonical order, from its own config (the same format as a file's)."""
    graph = _graph_from_config("<model>", {"class_name": "Functional", "config": model.get_config()})
    shapes = {layer.name: tuple(tuple(int(d) for d in w.shape) for w in layer.weights) for layer in model.layers if layer.weights}
    return reduce_to_weighted(graph, shapes)


def load_keras3_weights(model: "keras.Model", path: str | os.PathLike, strict: bool = False) -> WeightLoadReport:
    """Assign a Keras 3 file's weights to `model`, pairing layers by structure (see the module docstring).

    A file whose weighted layers differ in number or wiring is a UserError naming the first
    difference. Pairs that differ only in shape (e.g. a 1000-class head against a 10-class one)
    keep their initial weights and are listed in the report, unless `strict`, where they are an
    error and nothing is loaded.
    """
    stored = read_keras3_file(path)
    if stored.has_graph:
        pairs = pair_by_structure(model_structure(model), stored)
    else:
        pairs = pair_as_keras_does(model, stored)
    report = WeightLoadReport(source=str(path), method="by structure")
    by_name = {layer.name: layer for layer in model.layers}
    assignments = []
    for mine, theirs in pairs:
        if mine.shapes != theirs.shapes:
            report.shape_mismatches.append(ShapeMismatch(f"{mine.name} (file: {theirs.name})", mine.shapes, theirs.shapes))
            continue
        report.matched.append(mine.name)
        assignments += zip(by_name[mine.name].weights, stored.arrays[theirs.name])
    if not report.matched and report.shape_mismatches:
        raise UserError(report.format().splitlines()[0] + f"; first difference: {report.shape_mismatches[0]}")
    if strict and not report.complete:
        raise UserError(report.format() + "\n", Remedy("{strict}: the file does not fit the model; nothing was loaded"))
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype, copy=False))
    return report


def pair_by_structure(ours: list[WeightedLayer], stored: StoredModel) -> list[tuple[WeightedLayer, WeightedLayer]]:
    """Pair the model's weighted layers with the file's, position by position in canonical order.

    Refuses (UserError) when the counts differ or when a pair reads from different layers, naming
    the first place where the two structures part.
    """
    theirs = stored.layers
    paired = dict(zip((layer.name for layer in ours), (layer.name for layer in theirs)))
    for index, (mine, other) in enumerate(zip(ours, theirs)):
        mapped = frozenset(paired.get(name, name) for name in mine.inputs)
        if mapped != other.inputs:
            raise UserError(
                f"{stored.source}: its structure differs from the spec's model at weighted layer {index + 1}: "
                f"model layer {mine.describe()} reads from {_names(mine.inputs)}, the file's {other.describe()} "
                f"from {_names(other.inputs)}"
            )
    if len(ours) != len(theirs):
        index = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a.shapes != b.shapes), min(len(ours), len(theirs)))
        where = (
            f"model {ours[index].describe() if index < len(ours) else '(none)'}, "
            f"file {theirs[index].describe() if index < len(theirs) else '(none)'}"
        )
        raise UserError(
            f"{stored.source}: its structure differs from the spec's model: the file has {len(theirs)} weighted "
            f"layers, the model {len(ours)}; first difference at weighted layer {index + 1}: {where}"
        )
    return list(zip(ours, theirs))


def pair_as_keras_does(model: "keras.Model", stored: StoredModel) -> list[tuple[WeightedLayer, WeightedLayer]]:
    """Pair a bare `.weights.h5` file's groups with `model`'s layers as `model.load_weights` does.

    Keras names each layer's group after its class, numbered in `model.layers` order (`conv2d`,
    `conv2d_1`, ...); the file's layer names play no part. A group the model lacks, or a model
    layer the file lacks, is a UserError.
    """
    from keras.src.utils.naming import to_snake_case  # the rule Keras's saving_lib names groups by

    by_name = {layer.name: layer for layer in stored.layers}
    used: dict[str, int] = {}
    pairs = []
    for layer in model.layers:
        base = to_snake_case(type(layer).__name__)
        used[base] = used.get(base, -1) + 1
        group = base if used[base] == 0 else f"{base}_{used[base]}"
        if not layer.weights:
            continue
        mine = WeightedLayer(layer.name, tuple(tuple(int(d) for d in w.shape) for w in layer.weights), frozenset())
        if group not in stored.groups:
            raise UserError(
                f"{stored.source}: holds no weights for the model's layer {mine.describe()} (Keras looks for group "
                f"`layers/{group}`). A .weights.h5 file holds no graph to map by structure; save the whole model "
                "(model.save('x.keras')) and load that"
            )
        pairs.append((mine, by_name[stored.groups.pop(group)]))
    for mine, other in pairs[:-1]:  # the last may be a classifier for another number of classes
        if mine.shapes != other.shapes:
            raise UserError(
                f"{stored.source}: Keras's pairing by class and order gives the model's layer {mine.describe()} the "
                f"file's {other.describe()}. A .weights.h5 file holds no graph to map by structure; save the whole "
                "model (model.save('x.keras')) and load that"
            )
    if stored.groups:
        group, name = next(iter(stored.groups.items()))
        raise UserError(f"{stored.source}: holds weights of layer `{name}` (group `layers/{group}`) that the model has no place for")
    return pairs


def reduce_to_weighted(graph: dict[str, list[str]], shapes: dict[str, tuple[tuple[int, ...], ...]]) -> list[WeightedLayer]:
    """Collapse a layer graph to its weighted layers and order them canonically.

    `graph` maps every layer to the layers it reads from (model inputs read from nothing). Each
    weighted layer gets the set of nearest weighted layers upstream; weightless layers vanish. The
    order is Kahn's topological sort, choosing among the ready layers by a hash of everything
    upstream of a layer (its shapes and, recursively, its inputs'), then of everything downstream:
    both depend only on structure, so two graphs of the same structure come out in corresponding
    orders whatever their names or construction order.
    """
    order = _topological(graph)
    sources: dict[str, frozenset[str]] = {}
    input_count = 0
    for name in order:
        if not graph[name]:
            if name in shapes:  # a weighted layer reading from nothing: keep it, with no inputs
                sources[name] = frozenset([name])
                continue
            sources[name] = frozenset([f"{_INPUT}{input_count}"])
            input_count += 1
            continue
        upstream: set[str] = set()
        for parent in graph[name]:
            upstream |= sources[parent]
        sources[name] = frozenset([name]) if name in shapes else frozenset(upstream)
    inputs = {
        name: frozenset().union(*(sources[parent] for parent in graph[name])) if graph[name] else frozenset()
        for name in order
        if name in shapes
    }
    up: dict[str, str] = {}
    for name in order:
        if name in shapes:
            up[name] = _digest((shapes[name], sorted(up.get(p, p) for p in inputs[name])))
    children: dict[str, list[str]] = {name: [] for name in inputs}
    for name, parents in inputs.items():
        for parent in parents:
            if parent in children:
                children[parent].append(name)
    down: dict[str, str] = {}
    for name in reversed([n for n in order if n in shapes]):
        down[name] = _digest((shapes[name], sorted(down[c] for c in children[name])))
    position = {name: i for i, name in enumerate(order)}
    waiting = {name: {p for p in parents if p in inputs} for name, parents in inputs.items()}
    ready = [name for name, parents in waiting.items() if not parents]
    result: list[WeightedLayer] = []
    while ready:
        ready.sort(key=lambda n: (up[n], down[n], position[n]))
        name = ready.pop(0)
        result.append(WeightedLayer(name, shapes[name], inputs[name]))
        for child in children[name]:
            waiting[child].discard(name)
            if not waiting[child]:
                ready.append(child)
    return result


def _graph_from_config(path, config) -> dict[str, list[str]]:
    """{layer name: [names of the layers it reads from]} from a Functional or Sequential config."""
    if not isinstance(config, dict) or config.get("class_name") not in ("Functional", "Sequential", "Model"):
        kind = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise UserError(f"{path}: not a Keras 3 functional or sequential model (its config is a {kind!r}); a model "
                        "class of its own (keras-hub's) shows no layer graph: load it in Python and map it with "
                        "archbuilder.keras.weights_nested.load_weights_from_model")
    body = config.get("config")
    entries = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"{path}: {_CONFIG_ENTRY} lists no layers")
    graph: dict[str, list[str]] = {}
    _add_entries(path, config["class_name"], entries, graph, [], depth=0)
    for name, parents in graph.items():
        for parent in parents:
            if parent not in graph:
                raise UserError(f"{path}: layer `{name}` reads from `{parent}`, which {_CONFIG_ENTRY} does not define")
    return graph


def _add_entries(path, kind: str, entries: list, graph: dict[str, list[str]], chain_from: list[str], depth: int) -> list[str]:
    """Add a model's layer entries to `graph`; return the name of the last one (as a list, or `chain_from`).

    A nested Sequential model (keras.applications' ConvNeXt wraps its stem and downsampling layers
    in them) is flattened: its layers form a chain from the nested model's inputs, and the nested
    model itself becomes a weightless node after them.
    """
    previous = chain_from
    for entry in entries:
        if not isinstance(entry, dict):
            raise UserError(f"{path}: {_CONFIG_ENTRY}: a layer entry is not a mapping")
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        if not isinstance(name, str):
            raise UserError(f"{path}: {_CONFIG_ENTRY}: a layer has no name")
        if name in graph:
            raise UserError(f"{path}: {_CONFIG_ENTRY}: two layers are named `{name}`")
        if kind == "Sequential":
            parents = list(previous)
        else:
            parents = list(dict.fromkeys(_tensor_sources(entry.get("inbound_nodes", []))))
        inner = (entry.get("config") or {}).get("layers") if isinstance(entry.get("config"), dict) else None
        if inner is not None:
            if entry.get("class_name") != "Sequential" or not isinstance(inner, list) or depth >= 8:
                raise UserError(f"{path}: layer `{name}` is a nested {entry.get('class_name')} model; "
                                "only nested Sequential models are mapped by structure")
            body = [e for e in inner if not (isinstance(e, dict) and e.get("class_name") == "InputLayer")]
            graph[name] = _add_entries(path, "Sequential", body, graph, parents, depth + 1)
        else:
            graph[name] = parents
        previous = [name]
    return previous


def _tensor_sources(node) -> Iterator[str]:
    """The producing layer of every Keras tensor referenced in an inbound node's args and kwargs."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            history = (node.get("config") or {}).get("keras_history")
            if isinstance(history, (list, tuple)) and history and isinstance(history[0], str):
                yield history[0]
            return
        for value in node.values():
            yield from _tensor_sources(value)
    elif isinstance(node, (list, tuple)):  # a model's own get_config() holds tuples, JSON lists
        for value in node:
            yield from _tensor_sources(value)


def _topological(graph: dict[str, list[str]]) -> list[str]:
    order, state = [], {}
    for root in graph:
        stack = [(root, False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(name)
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise UserError(f"the model graph has a cycle through layer `{name}`")
            state[name] = 1
            stack.append((name, True))
            stack += [(parent, False) for parent in reversed(graph[name]) if state.get(parent) != 2]
    return order


def _read_layer_groups(path, stream) -> dict[str, tuple[int, list["np.ndarray"]]]:
    """{layer name: (its group's name, [arrays in Keras's variable order])} for weighted layers."""
    import h5py
    import numpy as np

    try:
        handle = h5py.File(stream, "r")
    except OSError as error:
        raise UserError(f"{path}: its weights are not a readable HDF5 file ({error})") from None
    with handle:
        layers = handle.get("layers")
        if not isinstance(layers, h5py.Group):
            hint = " (it looks like a Keras 2 file: give it as .h5)" if "layer_names" in handle.attrs or "model_weights" in handle else ""
            raise UserError(f"{path}: not a Keras 3 weights file (no `layers` group){hint}")
        stored: dict[str, tuple[str, list[np.ndarray]]] = {}
        _collect_layer_groups(path, layers, "", stored, depth=0)
        return stored


def _collect_layer_groups(path, layers, prefix: str, stored: dict, depth: int) -> None:
    """Add every weighted layer under the HDF5 group `layers` (and nested models' `layers/`) to `stored`."""
    import h5py
    import numpy as np

    for group_name in layers:
        group = layers[group_name]
        if not isinstance(group, h5py.Group):
            continue
        key = prefix + group_name
        nested = group.get("layers")
        if isinstance(nested, h5py.Group):  # a nested model: its layers are stored beneath it
            if depth >= 8:
                raise UserError(f"{path}: models nest more than 8 deep in its weights")
            _collect_layer_groups(path, nested, key + "/layers/", stored, depth + 1)
        variables = group.get("vars")
        if not isinstance(variables, h5py.Group):
            continue
        name = variables.attrs.get("name", group_name)
        name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
        for child in group:
            if child not in ("vars", "seed_generator", "layers") and _holds_arrays(group[child]):
                raise UserError(f"{path}: layer `{name}` stores weights of sublayers; only whole layers are mapped by structure")
        keys = sorted(variables, key=lambda k: int(k) if k.isdigit() else -1)
        if not keys:
            continue
        if any(not k.isdigit() for k in keys) or keys != [str(i) for i in range(len(keys))]:
            raise UserError(f"{path}: layer `{name}`: unexpected variable names {keys[:4]}")
        datasets = [variables[k] for k in keys]
        if any(not isinstance(d, h5py.Dataset) for d in datasets):
            raise UserError(f"{path}: layer `{name}`: a variable is not an array")
        if name in stored:
            raise UserError(f"{path}: two layers' weights are named `{name}`")
        stored[name] = (key, [np.asarray(d) for d in datasets])


def _holds_arrays(group) -> bool:
    import h5py

    found = []
    if isinstance(group, h5py.Group):
        group.visititems(lambda _, obj: found.append(1) if isinstance(obj, h5py.Dataset) else None)
    return bool(found)


def _read_bare_weights(path: Path) -> StoredModel:
    try:
        with open(path, "rb") as stream:
            stored = _read_layer_groups(path, stream)
    except OSError as error:
        raise UserError(f"{path}: not readable ({error})") from None
    layers = [WeightedLayer(name, _array_shapes(arrays), frozenset()) for name, (_, arrays) in stored.items()]
    return StoredModel(str(path), layers, {name: arrays for name, (_, arrays) in stored.items()},
                       {group: name for name, (group, _) in stored.items()}, has_graph=False)


def _array_shapes(arrays) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(d) for d in array.shape) for array in arrays)


def _parse_json(path, data: bytes):
    try:
        return json.loads(data)
    except NOT_JSON as error:
        raise UserError(f"{path}: {_CONFIG_ENTRY} is not valid JSON ({json_reason(error)})") from None


def _digest(value) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()


def _names(names: frozenset[str]) -> str:
    return "[" + ", ".join(sorted(names)) + "]" if names else "[nothing]"
