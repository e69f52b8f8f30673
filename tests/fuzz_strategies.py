"""Hypothesis strategies that generate spec files three ways, and the invariant every one must keep.

    random_yaml()      random YAML documents: nested data dumped to YAML, and YAML-ish text/bytes
    schema_specs()     specs drawn from the schema, valid and near-valid (wrong types and values),
                       with ids across the network (the head taking from the stem or a stage)
    shipped_mutants()  every shipped file under architectures/ with a few mutations applied
    block_specs()      specs defining their own blocks: expressions, conditions, `from:`
                       references, block calls (recursive ones too), multipliers, variables
    network_specs()    networks beyond one chain: ids across stem, stages, sections and head,
                       `sections:`, one to three named `outputs:`, `from: [map, like]` layers,
                       token layers on tokens and on images

A case is a `Case`: the file's bytes, which shipped directory it stands in (so `extends:` finds
its real parents) and `--set` overrides. `check_case` runs it through the same code as the CLI
and raises `InvariantBroken` if the outcome is anything but "accepted, built, agrees with static
inference" or "rejected with exit code 2 and only `file:line:col: path: message` lines".
Shared by tests/test_fuzz_spec.py (bounded, CI) and bench/fuzz.py (20,000+ cases).
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURES = REPO / "architectures"
SHIPPED = sorted(ARCHITECTURES.rglob("*.yaml"))
ERROR_LINE = re.compile(r"^[^\n]+:\d+:\d+: [^\n]*: .+$")

# Keras builds cost ~0.2-2 s each, so only small accepted networks are built, and only a bounded
# number per run (the caller passes `build=True` while it has budget); every accepted case is
# still validated and planned.
BUILD_MAX_PARAMS = 2_000_000
BUILD_MAX_NODES = 200


@dataclass(frozen=True)
class Case:
    text: bytes
    directory: str = "."  # relative to architectures/: where the file sits, for `extends:`
    overrides: tuple[str, ...] = ()
    origin: str = ""

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return f"Case(origin={self.origin!r}, directory={self.directory!r}, overrides={self.overrides!r}, text={self.text!r})"


class InvariantBroken(AssertionError):
    pass


@dataclass
class Outcome:
    accepted: bool
    built: bool = False
    lines: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The invariant
# ---------------------------------------------------------------------------------------------


class Workspace:
    """A private copy of architectures/, so a case can sit beside the files it extends."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="archbuilder-fuzz-"))
        shutil.copytree(ARCHITECTURES, self.root / "architectures")

    def place(self, case: Case) -> Path:
        path = self.root / "architectures" / case.directory / "fuzz_case.yaml"
        path.write_bytes(case.text)
        return path

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def check_case(case: Case, workspace: Workspace, *, build: bool = False, build_max_params: int = BUILD_MAX_PARAMS) -> Outcome:
    """Run `validate` (click's CliRunner, in process) and, if accepted and small, build and compare."""
    from click.testing import CliRunner

    from archbuilder.cli import main

    path = workspace.place(case)
    args = ["validate", str(path)]
    for override in case.overrides:
        args += ["--set", override]
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(*result.exc_info))
        raise InvariantBroken(f"validate raised {type(result.exception).__name__}:\n{trace}")
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        bad = [line for line in lines if not ERROR_LINE.match(line)]
        if not lines or bad or result.stdout:
            raise InvariantBroken(f"rejection not in the located format: stderr={result.stderr!r} stdout={result.stdout!r}")
        return Outcome(accepted=False, lines=lines)
    if result.exit_code != 0:
        raise InvariantBroken(f"validate exited {result.exit_code}: {result.output!r}")

    from archbuilder.plan.validate import load_checked_spec

    checked = load_checked_spec(path, case.overrides)
    plan = checked.plan
    if not (build and plan.total_params < build_max_params and len(plan.nodes) < BUILD_MAX_NODES):
        return Outcome(accepted=True)
    compare_with_keras(checked)
    return Outcome(accepted=True, built=True)


def compare_with_keras(checked) -> None:
    """Build the model as `build` does and check static inference against what Keras built."""
    import keras

    from archbuilder.keras.graph import build_model

    plan = checked.plan
    try:
        model = build_model(checked.spec, plan)
    except Exception as error:  # any failure here is a spec that validate should have refused
        import traceback

        raise InvariantBroken(f"build failed on an accepted spec: {error!r}\n{traceback.format_exc()}") from error
    try:
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        # Named outputs (`outputs:`) make the model's output a dict; each is compared by name.
        named = plan.output_nodes()
        if named is None:
            got_outputs, want_outputs = tuple(model.output.shape[1:]), plan.output.out_shape
        elif not isinstance(model.output, dict):
            raise InvariantBroken(f"the spec names outputs {sorted(named)}, Keras's model returns {type(model.output).__name__}")
        else:
            got_outputs = {name: tuple(tensor.shape[1:]) for name, tensor in model.output.items()}
            want_outputs = {name: node.out_shape for name, node in named.items()}
        got = (model.count_params(), trainable, got_outputs, len(model.layers))
        want = (plan.total_params, plan.trainable_params, want_outputs, len(plan.nodes))
        if got != want:
            raise InvariantBroken(f"Keras (params, trainable, output shapes, layers) {got} != static {want}")
        for node in plan.nodes:
            if node.name is None:
                continue
            layer = model.get_layer(node.name)
            got_layer = (tuple(layer.output.shape[1:]), layer.count_params())
            if got_layer != (node.out_shape, node.params):
                raise InvariantBroken(f"layer {node.name}: Keras {got_layer} != static {(node.out_shape, node.params)}")
    finally:
        del model
        keras.backend.clear_session()


# ---------------------------------------------------------------------------------------------
# (a) random YAML documents
# ---------------------------------------------------------------------------------------------

SPEC_WORDS = [
    "name", "input", "shape", "classes", "defaults", "stem", "stages", "head", "training", "type", "filters",
    "kernel", "stride", "repeats", "block", "extends", "units", "conv", "dense", "bottleneck", "basic",
    "padding", "pool", "label", "shortcut", "activation", "seed", "naming", "batch_norm", "epsilon",
]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(-3, 300), st.sampled_from([0, -1, 10**9, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(SPEC_WORDS),
)
keys = st.one_of(st.sampled_from(SPEC_WORDS), st.text(max_size=12), st.integers(-5, 5), st.booleans(), st.none(),
                 st.floats(allow_nan=False))
nested_data = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)),
    max_leaves=40,
)
YAML_CHARS = list(":-[]{}&*!|>'\"%@#`,? \t\n\r\\.0123456789abcxyz") + ["<<", "---", "...", "!!str", "!!python/name:os.system", "&a", "*a", "\u00e9", "\ufeff", "\x00", "\x85", "\u2028"]


def _dump(data: Any, flow: bool | None) -> bytes:
    return yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True, sort_keys=False).encode("utf-8")


@st.composite
def _dumped(draw) -> Case:
    data = draw(st.one_of(nested_data, st.dictionaries(st.sampled_from(SPEC_WORDS), nested_data, max_size=8)))
    return Case(_dump(data, draw(st.sampled_from([None, True, False]))), origin="random-data")


@st.composite
def _yamlish_text(draw) -> Case:
    pieces = draw(st.lists(st.one_of(st.sampled_from(YAML_CHARS), st.sampled_from(SPEC_WORDS)), max_size=60))
    return Case("".join(pieces).encode("utf-8", "surrogatepass"), origin="yaml-ish text")


def random_yaml() -> st.SearchStrategy[Case]:
    return st.one_of(
        _dumped(),
        _yamlish_text(),
        st.text(max_size=200).map(lambda t: Case(t.encode("utf-8", "surrogatepass"), origin="random text")),
        st.binary(max_size=200).map(lambda b: Case(b, origin="random bytes")),
    )


# ---------------------------------------------------------------------------------------------
# (b) specs drawn from the schema, valid and near-valid
# ---------------------------------------------------------------------------------------------

# A small pool, so that two layers sometimes share a name (and with the blocks' own names).
LAYER_NAMES = [None, None, None, "conv1", "bn_conv1", "fc", "fc{classes}", "avg_pool", "res2a_branch2a", "input_1",
               "activation", "activation_1", "input_layer", "conv2d", "add", "flatten", "conv2_block1_out",
               "a.b-c", "{classes}", "x" * 128]
size2d = st.one_of(st.integers(1, 5), st.lists(st.integers(1, 5), min_size=2, max_size=2))


# Each primitive's fields are drawn from its own JSON Schema (its field types: enums, bounds,
# lengths), so a primitive added to archbuilder/layers is fuzzed with its fields at once. These
# hints, by field name, keep values in the ranges where small networks stay valid.
FIELD_HINTS = {
    "filters": st.integers(1, 16),
    "units": st.one_of(st.just("classes"), st.integers(1, 20)),
    "kernel": size2d, "stride": size2d, "pool": size2d, "size": size2d,
    "dilation": st.sampled_from([1, 1, 2, [1, 2]]),
    "depth_multiplier": st.integers(1, 3),
    "groups": st.sampled_from([1, 1, 2]),
    "rate": st.sampled_from([0.0, 0.1, 0.5, 0.99]),
    "epsilon": st.sampled_from([1e-5, 1e-3, 0.1]),
    "momentum": st.sampled_from([0.0, 0.9, 0.99]),
    "init": st.sampled_from([1e-6, 1.0]),
    "scale": st.sampled_from([1 / 255, 2.0, -1.0]),
    "offset": st.sampled_from([0.0, -1.0]),
    "shape": st.sampled_from([[1, 1, -1], [-1], [2, -1]]),
    "mean": st.sampled_from([0.5, [0.1, 0.2, 0.3]]),
    "variance": st.sampled_from([0.25, [1.0, 2.0, 3.0]]),
    "cropping": st.one_of(st.integers(0, 2), st.lists(st.integers(0, 2), min_size=2, max_size=2)),
}
COMMON_FIELDS = {"type", "name", "id", "from", "when"}  # drawn by the callers (names, wiring)


def _layer_schema(kind: str) -> dict:
    from archbuilder.layers import BY_TYPE

    if kind not in _SCHEMAS:
        _SCHEMAS[kind] = BY_TYPE[kind].model_json_schema(by_alias=True)
    return _SCHEMAS[kind]


_SCHEMAS: dict[str, dict] = {}


def _from_schema(schema: dict) -> st.SearchStrategy | None:
    """A strategy for one JSON Schema of a field's value; None for what is drawn elsewhere (nested
    models, bare strings: expressions and names)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        options = [s for s in (_from_schema(member) for member in schema["anyOf"]) if s is not None]
        return st.one_of(options) if options else None
    kind = schema.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum", low + 8)
        return st.integers(low, min(high, low + 8))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0.0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 2.0))
        values = {v for v in (schema.get("minimum"), (low + high) / 2, schema.get("maximum")) if v is not None}
        return st.sampled_from(sorted(values))
    if kind == "array" and "items" in schema:
        items = _from_schema(schema["items"])
        if items is None:
            return None
        low = schema.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=min(schema.get("maxItems", low + 3), low + 3))
    return None


def _layer(kind: str, draw) -> dict:
    """A layer of `kind` with its required fields and about half of its optional ones."""
    schema = _layer_schema(kind)
    required = set(schema.get("required", ()))
    layer: dict[str, Any] = {"type": kind}
    for field_name, field_schema in schema.get("properties", {}).items():
        if field_name in COMMON_FIELDS or (field_name not in required and not draw(st.booleans())):
            continue
        strategy = FIELD_HINTS.get(field_name)
        if strategy is None or draw(st.integers(0, 9)) == 0:  # now and then, any value the type allows
            typed = _from_schema(field_schema)
            strategy = strategy if typed is None else typed
        if strategy is not None:
            layer[field_name] = draw(strategy)
    name = draw(st.sampled_from(LAYER_NAMES))
    if name is not None:
        layer["name"] = name
    return layer


def _kinds() -> tuple[list[str], list[str]]:
    """Every primitive's type, split into single-input layers and merges (which need `from:`)."""
    from archbuilder.layers import BY_TYPE

    return [t for t, c in BY_TYPE.items() if not c.merge], [t for t, c in BY_TYPE.items() if c.merge]


SINGLE_KINDS, MERGES = _kinds()
# The usual conv-norm-activation layers drawn more often, so that more drawn networks build.
STEM_KINDS = [*SINGLE_KINDS, "conv", "batch_norm", "activation", "max_pool", "zero_padding"]
HEAD_KINDS = [*SINGLE_KINDS, "global_average_pool", "flatten", "dense", "dense"]


@st.composite
def _stage(draw) -> dict:
    block = draw(st.sampled_from(["basic", "bottleneck"]))
    count = 2 if block == "basic" else 3
    stage: dict[str, Any] = {"block": block, "filters": draw(st.lists(st.integers(1, 16), min_size=count, max_size=count))}
    for key, strategy in (("kernel", st.integers(1, 4)), ("stride", st.integers(1, 3)), ("repeats", st.integers(1, 3)),
                          ("label", st.integers(0, 9)),
                          ("shortcut", st.sampled_from(["projection_first", "projection_if_needed", "identity"]))):
        if draw(st.booleans()):
            stage[key] = draw(strategy)
    return stage


@st.composite
def _valid_spec(draw) -> dict:
    spec: dict[str, Any] = {
        "name": draw(st.sampled_from(["Net", "tiny_net", "a.b-c", "N" * 128])),
        "input": {"shape": [draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 4))]},
    }
    if draw(st.booleans()):
        spec["input"]["name"] = draw(st.sampled_from(LAYER_NAMES[3:]))
    if draw(st.integers(0, 4)):
        spec["classes"] = draw(st.integers(1, 10))
    if draw(st.booleans()):
        init_type = draw(st.sampled_from(["glorot_uniform", "he_normal", "lecun_uniform", "glorot_uniform_tf1"]))
        init: dict[str, Any] = {"type": init_type}
        if init_type == "glorot_uniform_tf1" or draw(st.booleans()):
            init["seed"] = draw(st.one_of(st.integers(0, 100), st.sampled_from([-1, 2**31, 2**32 + 5, 2**63, 10**30])))
        spec["defaults"] = {
            "kernel_initializer": init,
            "use_bias": draw(st.booleans()),
            "batch_norm": {"axis": draw(st.sampled_from([-1, 3])), "epsilon": 1e-3, "momentum": 0.99},
            "naming": draw(st.sampled_from(["notebook", "keras"])),
        }
    spec["stem"] = [_layer(k, draw) for k in draw(st.lists(st.sampled_from(STEM_KINDS), max_size=4))]
    spec["stages"] = draw(st.lists(_stage(), max_size=3))
    spec["head"] = [_layer(k, draw) for k in draw(st.lists(st.sampled_from(HEAD_KINDS), max_size=3))]
    if draw(st.integers(0, 3)) == 0:  # ids across the network: the head takes from the stem or a stage
        targets = []
        if spec["stem"]:
            spec["stem"][0]["id"] = "e0"
            targets.append("e0")
        if spec["stages"]:
            spec["stages"][0]["id"] = "s0"
            targets.append("s0")
        ref = draw(st.sampled_from([*targets, *targets, "input", "nowhere", "h9"]))  # h9: later, or nowhere
        item = draw(st.sampled_from([{"type": "concat", "from": ["input", ref]}, {"type": "add", "from": ["input", ref]},
                                     {"type": "global_average_pool", "from": ref}]))
        spec["head"].insert(draw(st.integers(0, len(spec["head"]))), item)
        if draw(st.booleans()):
            spec["head"].append({"type": "flatten", "id": draw(st.sampled_from(["h9", "e0", "input"]))})
    if draw(st.integers(0, 3)) == 0:
        spec["training"] = {"optimizer": draw(st.sampled_from(["adam", "sgd"])), "batch_size": draw(st.integers(1, 64)),
                            "epochs": draw(st.integers(1, 5)), "learning_rate": draw(st.sampled_from([1e-3, 0.1]))}
    for key in ("stem", "stages", "head"):
        if not spec[key] and draw(st.booleans()):
            del spec[key]
    return spec


@st.composite
def schema_specs(draw) -> Case:
    spec = draw(_valid_spec())
    near = draw(st.integers(0, 2))  # about a third of cases stay valid
    for _ in range(near):
        spec = draw(mutated_data(spec))
    return Case(_dump(spec, draw(st.sampled_from([None, False]))), origin=f"schema, {near} mutations")


# ---------------------------------------------------------------------------------------------
# (c) mutations of the shipped files
# ---------------------------------------------------------------------------------------------

ODD_VALUES = [0, -1, 10**9, 10**400, 1.5, -0.0, float("inf"), float("nan"), True, None, "", "x", "128",
              [], {}, [1], [0, 0, 0], {"type": "conv"}, "classes", "bottleneck"]


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into `data`, containers included."""
    found = [prefix]
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found += _paths(value, prefix + (key,))
    return found


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


@st.composite
def mutated_data(draw, data: Any) -> Any:
    """`data` with one mutation: drop, retype, swap, rescale, insert an unknown key, or duplicate a list item."""
    data = copy.deepcopy(data)
    paths = _paths(data)
    path = draw(st.sampled_from(paths))
    value = _get(data, path)
    operation = draw(st.sampled_from(["drop", "retype", "swap", "scale", "unknown_key", "null", "duplicate_item", "rewire"]))
    if operation == "rewire":  # a `from:`, `id` or output moved to another id of the file (or none)
        wires = [p for p in paths if p and (p[-1] in ("from", "id") or (len(p) > 1 and p[-2] == "from")
                                           or p[:1] == ("outputs",) and len(p) == 2)]
        if wires:
            ids = sorted({v for p in paths if p and p[-1] == "id" and isinstance(v := _get(data, p), str)})
            data = _set(data, draw(st.sampled_from(wires)), draw(st.sampled_from([*ids, "input", "nowhere"])))
    elif operation == "drop" and path:
        parent = _get(data, path[:-1])
        del parent[path[-1]]
    elif operation == "retype":
        data = _set(data, path, draw(st.one_of(st.sampled_from(ODD_VALUES), scalars)))
    elif operation == "swap":
        other = draw(st.sampled_from(paths))
        if path and other and path[: len(other)] != other and other[: len(path)] != path:
            first, second = copy.deepcopy(value), copy.deepcopy(_get(data, other))
            data = _set(data, path, second)
            data = _set(data, other, first)
    elif operation == "scale":
        numbers = [p for p in paths if isinstance(_get(data, p), (int, float)) and not isinstance(_get(data, p), bool)]
        if numbers:
            target = draw(st.sampled_from(numbers))
            data = _set(data, target, draw(st.sampled_from([0, -1, 10**9, 2, 10**400, 0.5])))
    elif operation == "unknown_key" and isinstance(value, dict):
        value[draw(st.sampled_from(["filtres", "typ", "extra", "Name", "stride_", "units"]))] = draw(scalars)
    elif operation == "null":
        data = _set(data, path, None)
    elif operation == "duplicate_item" and isinstance(value, list) and value:
        index = draw(st.integers(0, len(value) - 1))
        value.insert(index, copy.deepcopy(value[index]))
    return data


# The files written in the language beyond one chain (sections, named outputs, ids across parts,
# resizes and crops to another map, token layers, separable convolutions), drawn three times as often.
# (Their block libraries under blocks/ are not networks: alone, each is refused for lacking `input`.)
BEYOND_ONE_CHAIN = ("segmentation/", "imagenet/vit_b16.yaml", "imagenet/xception.yaml")


@functools.cache
def _shipped_texts() -> list[tuple[str, str]]:
    texts = []
    for path in SHIPPED:
        relative = path.relative_to(ARCHITECTURES).as_posix()
        copies = 3 if relative.startswith(BEYOND_ONE_CHAIN) else 1
        texts += [(str(path.parent.relative_to(ARCHITECTURES)), path.read_text(encoding="utf-8"))] * copies
    return texts


@st.composite
def _text_mutation(draw, text: str) -> str:
    """Break the file as an editor would: indentation, a duplicated or deleted line, stray characters."""
    lines = text.splitlines(keepends=True) or [""]
    index = draw(st.integers(0, len(lines) - 1))
    operation = draw(st.sampled_from(["indent", "dedent", "duplicate_line", "delete_line", "insert_chars", "tab", "truncate"]))
    line = lines[index]
    if operation == "indent":
        lines[index] = " " * draw(st.integers(1, 5)) + line
    elif operation == "dedent":
        lines[index] = line.lstrip(" ")
    elif operation == "duplicate_line":
        lines.insert(index, line)
    elif operation == "delete_line":
        del lines[index]
    elif operation == "insert_chars":
        column = draw(st.integers(0, len(line)))
        chars = "".join(draw(st.lists(st.sampled_from(YAML_CHARS), min_size=1, max_size=3)))
        lines[index] = line[:column] + chars + line[column:]
    elif operation == "tab":
        lines[index] = "\t" + line.lstrip(" ")
    elif operation == "truncate":
        return "".join(lines)[: draw(st.integers(0, len(text)))]
    return "".join(lines)


OVERRIDES = st.sampled_from([
    "stages.0.repeats=0", "stages.1.repeats=2", "input.shape=[8,8,3]", "input.shape=[1000000000,3,3]", "classes=null",
    "stages=null", "head.0={type: flatten}", "stages.0={block: basic}", "stages.-1.filters=[1,1,1]", "name=",
    "defaults.naming=keras", "stages.9.repeats=1", "x.y.z=1", "=", "stem.0.type=conv", "stages.0.stride=[2]",
    "input.shape.0=-3", "stages.0=[]", "head=[1, 2]", "extends=resnet18.yaml", "stages.1.block=basic",
])


@st.composite
def shipped_mutants(draw) -> Case:
    directory, text = draw(st.sampled_from(_shipped_texts()))
    how = draw(st.sampled_from(["data", "data", "text", "both"]))
    if how in ("data", "both"):
        data = yaml.safe_load(text)
        for _ in range(draw(st.integers(1, 3))):
            data = draw(mutated_data(data))
        text = _dump(data, draw(st.sampled_from([None, False]))).decode("utf-8")
    if how in ("text", "both"):
        for _ in range(draw(st.integers(1, 2))):
            text = draw(_text_mutation(text))
    overrides = tuple(draw(st.lists(OVERRIDES, max_size=2))) if draw(st.integers(0, 4)) == 0 else ()
    return Case(text.encode("utf-8", "surrogatepass"), directory=directory, overrides=overrides,
                origin=f"mutant of {directory}, {how}")


# ---------------------------------------------------------------------------------------------
# (d) specs that define blocks: the block language
# ---------------------------------------------------------------------------------------------

# Expression pieces: defined names (params p, q, the network's), undefined ones, literals that
# divide by zero or exceed any size, and every operator and function of the grammar.
EXPR_NAMES = ["p", "q", "in_channels", "in_height", "block_index", "repeats", "width", "depth", "drop_path",
              "num_blocks", "widths[0]", "widths[1]", "p", "q", "in_channels"]
EXPR_ATOMS = [*EXPR_NAMES, "0", "1", "2", "3", "8", "0.5", "-1", "true"]
BAD_ATOMS = ["missing", "widths[5]", "1e30", "2 ** 60", "v", "'s'", "widths"]  # v: only where variables define it
EXPR_OPS = ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", ">=", "and", "or"]
EXPR_FUNCS = ["max({}, 1)", "min({}, 16)", "int({})", "ceil({})", "make_divisible({}, 8)", "abs({})", "round({})",
              "({} if p > 2 else 4)", "not {}", "({})", "float({})", "floor({})"]
BAD_FUNCS = ["__import__({})", "{}.x", "[{}]", "{}[1:2]", "lambda: {}", "open({})"]


@st.composite
def expression(draw, depth: int = 0) -> str:
    if depth > 2 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(BAD_ATOMS if draw(st.integers(0, 14)) == 0 else EXPR_ATOMS))
    if draw(st.booleans()):
        funcs = BAD_FUNCS if draw(st.integers(0, 9)) == 0 else EXPR_FUNCS
        return draw(st.sampled_from(funcs)).format(draw(expression(depth + 1)))
    return f"{draw(expression(depth + 1))} {draw(st.sampled_from(EXPR_OPS))} {draw(expression(depth + 1))}"


def _maybe_expression(draw, literal):
    """A literal most of the time, else an expression that usually makes sense, rarely any."""
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return draw(expression())
    if choice <= 4:
        return draw(st.sampled_from(["p", "q * 2", "max(1, in_channels // 2)", "make_divisible(p * width, 8)",
                                     "widths[1]", "in_channels", "p if block_index == 0 else 2 * p"]))
    return literal


# Every primitive, and the shape-keeping ones thrice more, so that a body's merges often fit.
BODY_KINDS = [*SINGLE_KINDS, *["conv", "batch_norm", "activation", "depthwise_conv", "layer_norm", "dropout"] * 3]


@st.composite
def _body_item(draw, index: int, block_names: list[str], ids: list[str], params: dict) -> dict:
    """One body item; `ids` are the earlier items' ids (this one's is appended)."""
    merge = draw(st.integers(0, 5)) == 0 and ids
    if draw(st.integers(0, 7)) == 0 and block_names:
        item: dict[str, Any] = {"block": draw(st.sampled_from(block_names))}
        item["q"] = _maybe_expression(draw, draw(st.integers(1, 8)))
    elif merge:
        item = {"type": draw(st.sampled_from(MERGES))}
        item["from"] = draw(st.lists(st.sampled_from(["input", *ids]), min_size=2, max_size=3))
    else:
        kind = draw(st.sampled_from(BODY_KINDS))
        item = _layer(kind, draw)
        item.pop("name", None)
        if kind == "conv":
            item["filters"] = _maybe_expression(draw, item["filters"])
            item["groups"] = draw(st.sampled_from([1, 1, 1, 2, "p"]))
        if kind in ("conv", "depthwise_conv", "max_pool") and draw(st.booleans()):
            item["stride"] = _maybe_expression(draw, 1) if "stride" not in params else draw(st.sampled_from([1, "stride"]))
        if kind == "drop_path" and draw(st.booleans()):
            item["rate"] = "drop_path"
        if draw(st.integers(0, 3)) == 0:
            item["name"] = draw(st.sampled_from(
                [f"x{{stage}}{{letter}}{{block}}_{index}", {"notebook": f"n{{stage}}{{letter}}_{index}",
                                                             "keras": f"k{{stage}}_{{block}}_{index}"},
                 "same", "{p * 2}_c", "{missing}", "{'a b'}", "fc{classes}", f"y{{block_number}}_{index}"]))
    if "from" not in item and ids and draw(st.integers(0, 3)) == 0:
        item["from"] = draw(st.sampled_from(["input", *ids]))
    if draw(st.integers(0, 2)) == 0:
        item["id"] = f"l{index}"
        ids.append(item["id"])
    if draw(st.integers(0, 20)) == 0:  # a reference that is wrong: later, unknown, or reserved
        item[draw(st.sampled_from(["from", "id"]))] = draw(st.sampled_from(["input", f"l{index + 1}", "nowhere", "l0"]))
    if draw(st.integers(0, 3)) == 0:
        item["when"] = draw(st.sampled_from(["p > 2", "block_index == 0", "in_channels == q", "true",
                                             "stride != 1" if "stride" in params else "false"]))
        if draw(st.integers(0, 5)) == 0:
            item["when"] = draw(expression())
    return item


@st.composite
def _block(draw, block_names: list[str]) -> dict:
    params: dict[str, Any] = {"p": {"type": "int", "default": draw(st.integers(1, 8)), "min": 1},
                              "q": {"type": "int", "min": 1, "scale": "width"}}  # q: required
    if draw(st.integers(0, 9)):
        params["widths"] = {"type": "int_list", "length": 2, "default": [4, 8]}
    if draw(st.booleans()):
        params["stride"] = {"type": "int", "default": 1, "min": 1, "max": 4}
    ids: list[str] = []
    body = [draw(_body_item(i, block_names, ids, params)) for i in range(draw(st.integers(1, 6)))]
    return {"params": params, "layers": body}


@st.composite
def block_specs(draw) -> Case:
    names = draw(st.lists(st.sampled_from(["alpha", "beta", "gamma"]), min_size=1, max_size=3, unique=True))
    # Calls may name any block, itself included: recursion must be refused, never looped. Mostly
    # a block calls only blocks defined after it, so most specs are acyclic.
    blocks = {}
    for position, name in enumerate(names):
        callable_names = names if draw(st.integers(0, 5)) == 0 else names[position + 1:]
        blocks[name] = draw(_block(callable_names))
    spec: dict[str, Any] = {
        "name": "Blocks",
        "input": {"shape": [draw(st.integers(1, 24)), draw(st.integers(1, 24)), draw(st.integers(1, 8))]},
        "classes": draw(st.integers(1, 5)),
        "blocks": blocks,
    }
    if draw(st.booleans()):
        spec["variables"] = {"v": draw(st.sampled_from([0, 1, 2.5, -3]))}
    if draw(st.booleans()):
        spec["multipliers"] = {"width": draw(st.sampled_from([0.35, 1.0, 1.4])),
                               "depth": draw(st.sampled_from([0.5, 1.0, 2.0]))}
    if draw(st.booleans()):
        spec["drop_path_rate"] = draw(st.sampled_from([0.0, 0.2]))
    stages = []
    for _ in range(draw(st.integers(1, 3))):
        block = draw(st.sampled_from(names * 8 + ["bottleneck", "nonexistent"]))
        stage: dict[str, Any] = {"block": block, "repeats": draw(st.integers(1, 3))}
        if block == "bottleneck":
            stage["filters"] = [4, 4, 8]
        elif draw(st.integers(0, 9)):  # a stage's expressions know the network, not the block's params
            stage["q"] = draw(st.sampled_from([draw(st.integers(1, 8)), "8 * width", "4 + block_index", "repeats",
                                               "max(1, in_channels // 2)", "num_blocks - block_number", "p" if draw(st.integers(0, 9)) == 0 else 3]))
        if draw(st.integers(0, 3)) == 0:
            stage["stride"] = draw(st.integers(1, 2))
            stage["stride_on"] = draw(st.sampled_from(["first", "last"]))
        stages.append(stage)
    spec["stages"] = stages
    spec["head"] = [{"type": "global_average_pool"}, {"type": "dense", "units": "classes"}] if draw(st.booleans()) else []
    if draw(st.integers(0, 5)) == 0:
        spec = draw(mutated_data(spec))
    return Case(_dump(spec, draw(st.sampled_from([None, False]))), origin="block spec")


# ---------------------------------------------------------------------------------------------
# (e) networks beyond one chain: ids across parts, sections, named outputs, two-input layers, tokens
# ---------------------------------------------------------------------------------------------


def _registry_kinds() -> tuple[list[str], list[str]]:
    """From the registry: layers that may take `from: [map, like]` (their Keras layer is called on
    fewer inputs than they read: resize, cropping), and the token layers (archbuilder/layers/tokens.py)."""
    from archbuilder.layers import BY_TYPE, Primitive

    two = [t for t, c in BY_TYPE.items() if not c.merge and c.keras_inputs is not Primitive.keras_inputs]
    token = [t for t, c in BY_TYPE.items() if c.__module__.endswith(".tokens")]
    return two, token


LIKE_KINDS, TOKEN_KINDS = _registry_kinds()
# On tokens (N, D): the token layers, and those acting on the last axis of any rank, drawn more often.
ON_TOKEN_KINDS = [*TOKEN_KINDS, *TOKEN_KINDS, "layer_norm", "dense", "dropout", "activation", "layer_scale", "drop_path"]
# Sections and heads of image networks: every primitive, and the resizing/decoder ones more often.
SECTION_KINDS = [*SINGLE_KINDS, "conv", "conv", "activation", "batch_norm", "upsample", "conv_transpose",
                 "separable_conv", "resize"]
SECTION_NAMES = ["decoder", "aspp", "neck", "fpn", "decoder", "aspp", "stem", "outputs", "2bad", "x" * 70]
OUTPUT_NAMES = ["mask", "label", "p3", "aux", "mask", "input", "classes", "bad-name"]
# Blocks these networks call: a strided step down, a shape-keeping pair, and a transformer-like
# residual on whatever it is given (so it works on tokens and fails, located, on images).
NET_BLOCKS = {
    "down": {"params": {"filters": {"type": "int", "min": 1}},
             "layers": [{"type": "conv", "filters": "filters", "kernel": 3, "stride": 2, "padding": "same"},
                        {"type": "activation", "activation": "relu"}]},
    "pair": {"params": {"filters": {"type": "int", "min": 1, "default": 4}},
             "layers": [{"type": "conv", "filters": "filters", "kernel": 3, "padding": "same"},
                        {"type": "batch_norm"}, {"type": "activation", "activation": "relu", "id": "out"}]},
    "attend": {"params": {"heads": {"type": "int", "min": 1, "default": 2}},
               "layers": [{"type": "layer_norm"}, {"type": "multi_head_attention", "num_heads": "heads", "id": "att"},
                          {"type": "add", "from": ["input", "att"], "id": "out"}]},
}
BAD_REFS = ["nowhere", "out", "input", "stem", "stages", "filters", "later"]  # unknown, a block's own, reserved


def _reference(draw, ids: list[str], wrong: bool):
    """A `from:` target: mostly an earlier id of the network, sometimes `input`, in a `wrong` spec now and then a wrong one."""
    roll = draw(st.integers(0, 19))
    if (roll == 0 and wrong) or not ids:
        return draw(st.sampled_from(BAD_REFS))
    if roll <= 3:
        return "input"
    return draw(st.sampled_from(ids))


@st.composite
def _net_item(draw, ids: list[str], kinds: list[str], tokens: bool, wrong: bool) -> dict:
    """One item of a stem, section or head; `ids` are the network's earlier ids (this one's is appended).
    Only a `wrong` spec gets unknown blocks, reused ids and wrong references on purpose."""
    roll = draw(st.integers(0, 11))
    if roll == 0:
        item: dict[str, Any] = {"block": draw(st.sampled_from([*NET_BLOCKS, "nonexistent"] if wrong else list(NET_BLOCKS)))}
        if item["block"] == "down" or item["block"] == "pair" and draw(st.booleans()) or wrong and draw(st.integers(0, 5)) == 0:
            item["filters"] = draw(st.integers(1, 8))
        if draw(st.integers(0, 2)) == 0:  # weights shared with an earlier call of the same key (or a wrong one)
            item["share"] = draw(st.sampled_from(["s0", "s1"] + (["", 5, "s0 s1"] if wrong else [])))
            if ids and draw(st.booleans()):
                item["from"] = _reference(draw, ids, wrong)  # the same block on another tensor, as a detector's heads
    elif roll == 1 and ids:
        item = {"type": draw(st.sampled_from(MERGES)),
                "from": [_reference(draw, ids, wrong) for _ in range(draw(st.integers(1 if wrong else 2, 3)))]}
    elif roll == 2 and ids and not tokens:  # to another map's size: `from: [map, like]`
        item = _layer(draw(st.sampled_from(LIKE_KINDS)), draw)
        # without its own size most of the time, which is what two inputs need
        item = {k: v for k, v in item.items() if k in ("type", "name") or draw(st.integers(0, 4)) == 0}
        item["from"] = [_reference(draw, ids, wrong) for _ in range(draw(st.sampled_from([2, 2, 2, 1, 3])))]
    else:
        item = _layer(draw(st.sampled_from(kinds)), draw)
        if ids and draw(st.integers(0, 4)) == 0:
            item["from"] = _reference(draw, ids, wrong)
    if draw(st.integers(0, 2)) == 0 and item.get("name") is not None:
        del item["name"]  # fewer clashing names, so that more networks are accepted
    if draw(st.integers(0, 2)) == 0:
        item["id"] = f"t{len(ids)}" if not wrong or draw(st.integers(0, 9)) else draw(st.sampled_from([*ids, "input", "t0"]) if ids else st.just("input"))
        ids.append(item["id"])
    return item


@st.composite
def network_specs(draw) -> Case:
    """A network of stem, stages, sections and head whose parts take each other's ids, with one to
    three named outputs; an image network (decoders, resizes and crops to another map's size) or a
    token one (patches reshaped to tokens, then token layers), and now and then token layers on
    images and image layers on tokens, which must be refused with a located message."""
    tokens = draw(st.integers(0, 3)) == 0
    wrong = draw(st.integers(0, 2)) == 0  # mistakes on purpose; the other two thirds are meant to be valid
    side = draw(st.integers(2, 24))
    spec: dict[str, Any] = {"name": "Net", "input": {"shape": [side, draw(st.integers(2, 24)), draw(st.integers(1, 4))]},
                            "classes": draw(st.integers(1, 6)), "blocks": NET_BLOCKS}
    ids: list[str] = []
    stem_kinds = STEM_KINDS if not tokens else ON_TOKEN_KINDS
    spec["stem"] = []
    if tokens:  # the patch embedding: a strided conv, reshaped to (tokens, channels); sometimes left out
        patch = draw(st.integers(1, 4))
        spec["stem"].append({"type": "conv", "filters": draw(st.sampled_from([4, 6, 8])), "kernel": patch, "stride": patch})
        if not wrong or draw(st.integers(0, 2)):
            spec["stem"].append({"type": "reshape", "shape": [-1, spec["stem"][0]["filters"]]})
    spec["stem"] += [draw(_net_item(ids, stem_kinds, tokens, wrong)) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.integers(0, 3)):  # a stage per size step, each with an id most of the time
        spec["stages"] = []
        for index in range(draw(st.integers(1, 3))):
            stage: dict[str, Any] = {"block": draw(st.sampled_from((["attend", "attend", "pair"] if wrong else ["attend"]) if tokens else
                                                                   ["down", "down", "pair", "attend" if wrong else "down", "basic"]))}
            if stage["block"] in ("down", "pair"):
                stage["filters"] = draw(st.integers(1, 8))
            elif stage["block"] == "basic":
                stage["filters"] = [draw(st.integers(1, 8))] * 2
            if draw(st.integers(0, 4)) == 0:
                stage["repeats"] = draw(st.integers(1, 3))
            if draw(st.integers(0, 3)):
                stage["id"] = f"s{index}" if not wrong or draw(st.integers(0, 9)) else draw(st.sampled_from([*ids, "input"]) if ids else st.just("input"))
                ids.append(stage["id"])
            spec["stages"].append(stage)
    section_kinds = SECTION_KINDS if not tokens else ON_TOKEN_KINDS
    if draw(st.integers(0, 3)):
        spec["sections"] = {}
        for _ in range(draw(st.integers(1, 3))):
            odd_kinds = ON_TOKEN_KINDS if not tokens else SECTION_KINDS  # image layers on tokens and back
            kinds = odd_kinds if wrong and draw(st.integers(0, 3)) == 0 else section_kinds
            spec["sections"][draw(st.sampled_from(SECTION_NAMES if wrong else SECTION_NAMES[:6]))] = [
                draw(_net_item(ids, kinds, tokens, wrong)) for _ in range(draw(st.integers(0 if draw(st.integers(0, 9)) == 0 else 1, 4)))]
    head = []
    if draw(st.integers(0, 2)):
        # a classifier head: pooled (from tokens: one token or their mean), then the classes
        pool = draw(st.sampled_from(["take_token", "average_tokens"] if tokens else ["global_average_pool", "flatten"]))
        if wrong and draw(st.integers(0, 4)) == 0:
            pool = draw(st.sampled_from([*TOKEN_KINDS, "global_average_pool"]))
        head.append({"type": pool, **({"from": _reference(draw, ids, wrong)} if ids and draw(st.booleans()) else {})})
        head.append({"type": "dense", "units": "classes", "activation": "softmax"})
        if draw(st.booleans()):
            head[-1]["id"] = "label"
            ids.append("label")
    head += [draw(_net_item(ids, section_kinds, tokens, wrong)) for _ in range(draw(st.integers(0, 2)))]
    spec["head"] = head
    outputs: list[tuple[str, Any]] = []
    if ids and draw(st.integers(0, 3)):
        # One to three, written as text so that a name may repeat (a duplicate key); two names
        # may take the same id; now and then one is not an id at all.
        names = draw(st.lists(st.sampled_from(OUTPUT_NAMES if wrong else OUTPUT_NAMES[:4]), min_size=1, max_size=3, unique=not wrong or draw(st.integers(0, 4)) > 0))
        for name in names:
            outputs.append((name, _reference(draw, ids, wrong) if wrong else draw(st.sampled_from(ids))))
        if wrong and draw(st.integers(0, 4)) == 0:
            outputs[-1] = (outputs[-1][0], draw(st.sampled_from([3, None, ["mask", "label"], {"id": "t0"}, ""])))
    if wrong and draw(st.integers(0, 2)) == 0:
        spec = draw(mutated_data(spec))
    text = _dump(spec, draw(st.sampled_from([None, False]))).decode("utf-8")
    if outputs and isinstance(spec, dict):
        text += "outputs:\n" + "".join(
            f"  {name}: {yaml.safe_dump(value, default_flow_style=True).removesuffix(chr(10)).removesuffix('...').strip()}\n"
            for name, value in outputs)
    return Case(text.encode("utf-8"), origin="network spec" + (" on tokens" if tokens else ""))


STRATEGIES = {"random_yaml": random_yaml(), "schema_specs": schema_specs(), "shipped_mutants": shipped_mutants(),
              "block_specs": block_specs(), "network_specs": network_specs()}
