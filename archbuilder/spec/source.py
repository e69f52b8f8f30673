"""Read one YAML file into plain Python data, remembering where every value came from.

PyYAML's own loaders lose positions, silently keep the last of two equal keys, expand aliases
without bound and (outside SafeLoader) construct Python objects from tags. Here the file is only
*composed* into nodes, and this module walks the nodes itself, so it can:

- record the line and column of every key and value (for `file:line:col` error messages);
- refuse duplicate keys, tags other than YAML's plain data types, and alias expansion beyond a
  small bound (a "billion laughs" document composes into a few nodes but expands exponentially);
- refuse oversized files, non-UTF-8 bytes and very deep nesting before they cost anything.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archbuilder.errors import Location, Problem, SpecError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: the largest shipped spec is ~2 KiB
MAX_DEPTH = 32  # a spec nests 4 levels; deeper documents are mistakes or attacks
MAX_VALUES = 20_000  # values, also after alias expansion; ResNet-152 has ~200

Path_ = tuple[Any, ...]  # a path into the data: keys (str) and list indices (int)

# libyaml's parser when PyYAML was built with it (the pinned wheels are): ~17x faster than the
# pure-Python one, which is most of what `validate` costs. Both give nodes with the same marks.
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq")
}


@dataclass
class Document:
    """Plain data from YAML plus the location of each value and mapping key, by path."""

    data: Any
    values: dict[Path_, Location] = field(default_factory=dict)
    keys: dict[Path_, Location] = field(default_factory=dict)

    def location_of(self, path: Path_, *, key: bool = False) -> Location:
        """The location of `path`, or of its nearest recorded ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return next(iter(self.values.values()), Location("<unknown>", 1, 1))


def format_path(path: Path_) -> str:
    return ".".join(str(part) for part in path)


def load_yaml_file(path: Path, display_name: str | None = None) -> Document:
    """Load a YAML file into a Document, or raise SpecError naming the file and position."""
    name = display_name or str(path)
    start = Location(name, 1, 1)
    try:
        if path.is_dir():
            raise SpecError([Problem(start, "", "is a directory, not a YAML file")])
        with _opened_without_waiting(path) as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([Problem(start, "", "file not found")]) from None
    except OSError as error:
        raise SpecError([Problem(start, "", f"cannot read file ({error.strerror})")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError([Problem(start, "", f"file is larger than {MAX_FILE_BYTES} bytes; refusing to parse it")])
    key = (name, raw)
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = load_yaml_text(_decode(raw, name), name)
        if len(raw) <= _PARSED_MAX_BYTES:
            if len(_PARSED) >= _PARSED_MAX_FILES:
                del _PARSED[next(iter(_PARSED))]  # the oldest
            _PARSED[key] = parsed
    # A copy: resolving a spec edits its documents in place (extends, imports, merges).
    return Document(copy_data(parsed.data), dict(parsed.values), dict(parsed.keys))


# Parsed files by (name, content). `validate` of many specs reads the same block libraries and
# extended parents again and again; parsing them is most of the cost of resolving a spec. Keyed
# by the bytes read, so an edited file is parsed anew; bounded, for long-lived processes.
_PARSED: dict[tuple[str, bytes], Document] = {}
_PARSED_MAX_FILES = 64
_PARSED_MAX_BYTES = 64 << 10


def copy_data(value: Any) -> Any:
    """A deep copy of plain YAML data (dicts, lists, scalars): copy.deepcopy's result, ~2.5x faster."""
    if isinstance(value, dict):
        return {key: copy_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_data(item) for item in value]
    return value


def load_yaml_text(text: str, name: str) -> Document:
    """Parse YAML text (one document) into a Document."""
    try:
        _refuse_too_many_values(text, name)
        root = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        location = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)
        message = f"YAML syntax error: {error.problem or error.context}"
        raise SpecError([Problem(location, "", message)]) from None
    except yaml.reader.ReaderError as error:  # a character YAML forbids; unlike the others, it has no mark
        # libyaml counts the position in UTF-8 bytes, PyYAML's own reader in characters.
        before = text.encode("utf-8", "surrogatepass")[: error.position].decode("utf-8", "ignore") \
            if _COMPOSER is not yaml.SafeLoader else text[: error.position]
        location = Location(name, before.count("\n") + 1, len(before) - before.rfind("\n"))
        message = f"YAML syntax error: character U+{error.character:04X} is not allowed ({error.reason})"
        raise SpecError([Problem(location, "", message)]) from None
    except yaml.YAMLError as error:
        raise SpecError([Problem(Location(name, 1, 1), "", f"YAML error: {error}")]) from None
    except RecursionError:
        raise SpecError([Problem(Location(name, 1, 1), "", f"nesting is too deep (limit {MAX_DEPTH})")]) from None
    document = Document(data=None)
    if root is None:
        document.values[()] = Location(name, 1, 1)
        return document
    builder = _Builder(name, document)
    document.data = builder.build(root, (), 0)
    if builder.problems:
        raise SpecError(builder.problems)
    return document


_VALUE_EVENTS = (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent)


def _refuse_too_many_values(text: str, name: str) -> None:
    """Count values as parser events before composing: a 1 MiB flow list holds 500,000 values,
    and composing them all (before _Builder could count) took PyYAML most of a minute and 400 MB;
    events cost little and are dropped as they come."""
    loader = _COMPOSER(text)
    try:
        count = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, _VALUE_EVENTS):
                count += 1
                if count > MAX_VALUES:
                    mark = event.start_mark
                    location = Location(name, mark.line + 1, mark.column + 1)
                    raise SpecError([Problem(location, "", f"document has more than {MAX_VALUES} values; refusing to parse it")])
    finally:
        loader.dispose()


def _opened_without_waiting(path: Path):
    """`path` opened for reading without waiting for a writer: opening a named pipe no process
    writes to waited for ever (`validate PIPE` hung); opened non-blocking, then read blocking, it
    reads as empty, while a pipe someone writes (`cat spec.yaml | validate /dev/stdin`) is read whole."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        before = raw[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        byte = raw[error.start : error.start + 1].hex()
        raise SpecError([Problem(Location(name, line, column), "", f"file is not UTF-8 text (byte 0x{byte})")]) from None


class _Builder:
    """Walks composed nodes into plain data, recording locations and collecting problems."""

    def __init__(self, name: str, document: Document):
        self.name = name
        self.document = document
        self.problems: list[Problem] = []
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def location(self, node: yaml.Node) -> Location:
        return Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            self._fatal(node, path, f"document expands to more than {MAX_VALUES} values (alias bomb?)")
        if depth > MAX_DEPTH:
            self._fatal(node, path, f"nesting is too deep (limit {MAX_DEPTH})")
        self.document.values[path] = self.location(node)
        if node.tag not in _PLAIN_TAGS:
            self.problems.append(
                Problem(self.location(node), format_path(path), f"tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' is not allowed: specs hold plain data only")
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,), depth + 1) for index, item in enumerate(node.value)]
        return self.constructor.construct_object(node)

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(
                    Problem(self.location(key_node), format_path(path), "merge keys ('<<') are not supported; use 'extends'")
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                self.problems.append(Problem(self.location(key_node), format_path(path), "mapping keys must be plain scalars"))
                continue
            key = self.constructor.construct_object(key_node)
            child = path + (key,)
            if key in result:
                first = self.document.keys[child]
                self.problems.append(
                    Problem(
                        self.location(key_node),
                        format_path(child),
                        f"duplicate key '{key}' (first defined at line {first.line})",
                    )
                )
                continue
            self.document.keys[child] = self.location(key_node)
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _fatal(self, node: yaml.Node, path: Path_, message: str) -> None:
        raise SpecError(self.problems + [Problem(self.location(node), format_path(path), message)])
