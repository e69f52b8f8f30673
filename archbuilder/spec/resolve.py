"""Resolve `extends:` chains and `--set PATH=VALUE` overrides into one Document.

Merge rules, applied child over parent (and `--set` over both):
- a mapping merges into a mapping key by key;
- a mapping whose keys are integers patches a list element by element, so
  `stages: {2: {repeats: 23}}` turns ResNet-50 into ResNet-101;
- `null` removes the key (the schema's default then applies);
- anything else replaces the value.
Locations follow the values, so an error points at the file (or `--set`) a value came from.

`imports:` (a list of block-library files, relative to the file naming them) adds each library's
`blocks:` to the file's own, located in the library file; the standard library
(archbuilder/library/*.yaml: `bottleneck`, `basic`) adds the block types no file defined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from archbuilder.errors import Location, Problem, SpecError, abbreviated, shown
from archbuilder.spec.source import (
    MAX_DEPTH, Document, Path_, copy_data, format_path, load_yaml_file, load_yaml_text,
)

MAX_EXTENDS_DEPTH = 16
MAX_IMPORT_DEPTH = 8  # a library importing a library ... this deep is a mistake
LIBRARY_KEYS = ("blocks", "imports")
STANDARD_LIBRARY = sorted((Path(__file__).resolve().parents[1] / "library").glob("*.yaml"))


def resolve_document(path: str | Path, overrides: Iterable[str] = ()) -> Document:
    """Load `path`, follow its `extends:` chain and apply overrides."""
    return _apply_overrides(_load_with_parents(Path(path), chain=()), overrides)


def resolve_text(text: str, name: str, overrides: Iterable[str] = ()) -> Document:
    """As `resolve_document`, for YAML text that is not a file (a dict given to the Python API);
    `extends` is relative to the current folder, and errors are located in `name`."""
    document = load_yaml_text(text, name)
    return _apply_overrides(_with_parents(document, Path.cwd() / name, chain=()), overrides)


def _apply_overrides(document: Document, overrides: Iterable[str]) -> Document:
    _add_standard_library(document)
    for override in overrides:
        patch = _parse_override(override)
        if isinstance(patch.data, dict) and "imports" in patch.data:  # it would be checked, then ignored
            raise SpecError([Problem(patch.location_of(("imports",)), "imports",
                                     "imports cannot be overridden: they are read with the file, before overrides "
                                     "apply; list them in the spec file (or in a file that extends it)")])
        _merge(document, patch.data, (), (), source=patch)
    return document


def _load_with_parents(path: Path, chain: tuple[Path, ...]) -> Document:
    return _with_parents(load_yaml_file(path, display_name=str(path)), path, chain)


def _with_parents(document: Document, path: Path, chain: tuple[Path, ...]) -> Document:
    if document.data is None:
        document.data = {}
    if not isinstance(document.data, dict):
        raise SpecError([Problem(document.location_of(()), "", f"a spec must be a mapping (received: {_kind(document.data)})")])
    parent_name = document.data.pop("extends", None)
    _merge_imports(document, path, chain=(path.resolve(),))
    if parent_name is None:
        return document
    where = document.location_of(("extends",))
    if not isinstance(parent_name, str) or not parent_name:
        raise SpecError([Problem(where, "extends", f"must be a file name (received: {parent_name!r})")])
    parent_path = (path.parent / parent_name).resolve()
    here = path.resolve()
    names = " -> ".join(str(p) for p in (*chain, here, parent_path))
    if parent_path in (*chain, here):
        raise SpecError([Problem(where, "extends", f"extends cycle: {names}")])
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise SpecError([Problem(where, "extends", f"extends chain is longer than {MAX_EXTENDS_DEPTH} files: {names}")])
    if not parent_path.exists():
        raise SpecError([Problem(where, "extends", f"file not found: {parent_path} (chain: {names})")])
    if parent_path.is_dir():
        raise SpecError([Problem(where, "extends", f"is a directory, not a YAML file: {parent_path} (chain: {names})")])
    try:
        parent = _load_with_parents(parent_path, chain + (here,))
    except SpecError as error:
        if any(p.location.file == str(parent_path) for p in error.problems):
            # Say which `extends` led to the broken parent, then what is wrong in it.
            header = Problem(where, "extends", f"in the extended file {parent_path}:")
            raise SpecError([header, *error.problems], in_order=True) from None
        raise
    _merge(parent, document.data, (), (), source=document)
    return parent


def _merge_imports(document: Document, path: Path, chain: tuple[Path, ...],
                   loaded: dict[tuple[Path, int], Document] | None = None) -> None:
    """Replace the file's `imports:` by the imported libraries' blocks (recursively).

    A library reached again (a diamond: two libraries importing a third) is read once per depth
    (`loaded`, so twenty imports of twenty imports of ... stay linear) and adds its blocks once."""
    loaded = {} if loaded is None else loaded
    imports = document.data.pop("imports", None)
    if imports is None:
        return
    where = document.location_of(("imports",))
    if not isinstance(imports, list) or not all(isinstance(i, str) and i for i in imports):
        raise SpecError([Problem(where, "imports", f"must be a list of file names (received: {imports!r})")])
    listed: dict[Path, int] = {}
    for index, name in enumerate(imports):
        here = document.location_of(("imports", index))
        library_path = (path.parent / name).resolve()
        if library_path in listed:
            raise SpecError([Problem(here, f"imports.{index}",
                                     f"{name!r} is imported twice in this list (first as imports.{listed[library_path]})")])
        listed[library_path] = index
        names = " -> ".join(str(p) for p in (*chain, library_path))
        if library_path in chain:
            raise SpecError([Problem(here, f"imports.{index}", f"import cycle: {names}")])
        if len(chain) > MAX_IMPORT_DEPTH:
            raise SpecError([Problem(here, f"imports.{index}", f"imports nest deeper than {MAX_IMPORT_DEPTH} files: {names}")])
        if not library_path.is_file():
            raise SpecError([Problem(here, f"imports.{index}", f"file not found: {library_path}")])
        library = loaded.get((library_path, len(chain)))
        if library is None:
            try:
                library = _load_library(library_path, str(path.parent / name), chain + (library_path,), loaded)
            except SpecError as error:
                if any(p.location.file == str(path.parent / name) for p in error.problems):
                    header = Problem(here, f"imports.{index}", f"in the imported file {library_path}:")
                    raise SpecError([header, *error.problems], in_order=True) from None
                raise
            loaded[(library_path, len(chain))] = library
        _add_blocks(document, library, fill_only=False)


def _load_library(path: Path, display_name: str, chain: tuple[Path, ...],
                  loaded: dict[tuple[Path, int], Document]) -> Document:
    library = load_yaml_file(path, display_name=display_name)
    if not isinstance(library.data, dict) or set(library.data) - set(LIBRARY_KEYS):
        extra = sorted(set(library.data) - set(LIBRARY_KEYS)) if isinstance(library.data, dict) else []
        where = library.location_of((extra[0],), key=True) if extra else library.location_of(())
        raise SpecError([Problem(where, extra[0] if extra else "",
                                 "a block library holds only 'blocks:' and 'imports:'" +
                                 (f" (received key '{extra[0]}')" if extra else ""))])
    _merge_imports(library, path, chain, loaded)
    return library


def _same_definition(first: Location, again: Location) -> bool:
    """Both at one line and column of one file (named relative to the current folder or not)."""
    return ((first.line, first.column) == (again.line, again.column)
            and Path(first.file).resolve() == Path(again.file).resolve())


def _add_blocks(document: Document, library: Document, fill_only: bool) -> None:
    """Copy the library's block types into the document's `blocks:`, with their locations.

    A name defined twice by imports (or by a file and its import) is an error; the standard
    library (fill_only) only adds the names nobody defined, so a file may redefine `bottleneck`."""
    blocks = library.data.get("blocks") or {}
    if not isinstance(blocks, dict):
        raise SpecError([Problem(library.location_of(("blocks",)), "blocks", "must be a mapping of block names to definitions")])
    own = document.data.setdefault("blocks", {})
    if own is None or not isinstance(own, dict):
        return  # the schema reports a `blocks:` that is not a mapping
    if ("blocks",) not in document.values:
        document.values[("blocks",)] = library.location_of(("blocks",))
    added = set()
    for name, definition in blocks.items():
        if name in own:
            if fill_only:
                continue
            first = document.location_of(("blocks", name), key=True)
            again = library.location_of(("blocks", name), key=True)
            if _same_definition(first, again):
                continue  # one library's block reached through two imports
            raise SpecError([Problem(again, f"blocks.{name}", f"block type '{name}' is defined twice (first at {first})")])
        own[name] = copy_data(definition)
        added.add(name)
    # The added blocks' locations (values and keys), in one pass over the library's tables.
    for table_target, table_source in ((document.values, library.values), (document.keys, library.keys)):
        for path, location in table_source.items():
            if len(path) > 1 and path[0] == "blocks" and path[1] in added:
                table_target[path] = location


_STANDARD: list[Document] = []


def _add_standard_library(document: Document) -> None:
    if not _STANDARD:
        for path in STANDARD_LIBRARY:
            _STANDARD.append(load_yaml_file(path, display_name=f"archbuilder/library/{path.name}"))
    for library in _STANDARD:
        _add_blocks(document, library, fill_only=True)


def _merge(target: Document, patch: Any, path: Path_, patch_path: Path_, source: Document | None = None) -> None:
    """Merge `patch` (from document `source`) into `target.data` at `path`."""
    current = _get(target.data, path)
    if isinstance(patch, dict) and isinstance(current, dict):
        for key, value in patch.items():
            _copy_key_location(target, source, path + (key,), patch_path + (key,))
            if value is None:
                current.pop(key, None)
                _forget(target, path + (key,))
            elif key in current:
                _merge(target, value, path + (key,), patch_path + (key,), source)
            else:
                current[key] = copy_data(value)
                _copy_locations(target, source, path + (key,), patch_path + (key,))
        return
    if isinstance(patch, dict) and isinstance(current, list) and patch and all(isinstance(k, int) for k in patch):
        removed = []
        for index, value in patch.items():
            if not -len(current) <= index < len(current):
                where = source.location_of(patch_path + (index,), key=True) if source else Location("<--set>", 1, 1)
                message = f"index {index} is out of range: the list has {len(current)} items"
                raise SpecError([Problem(where, format_path(path + (index,)), message)])
            if value is None:  # `stages: {2: null}` removes the item; indices are the parent's
                removed.append(index % len(current))
                continue
            _merge(target, value, path + (index % len(current),), patch_path + (index,), source)
        for index in sorted(set(removed), reverse=True):
            del current[index]
            _renumber_after_removal(target, path, index)
        return
    _set(target.data, path, copy_data(patch))
    _forget(target, path)
    _copy_locations(target, source, path, patch_path)


def _parse_override(text: str) -> Document:
    """`stages.2.repeats=23` -> {'stages': {2: {'repeats': 23}}}, every value located at the override."""
    name = f"<--set {abbreviated(text)}>"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach argv as surrogates (PEP 383)
        raise SpecError([Problem(Location(f"<--set {shown(text)}>", 1, 1), "", "the value is not UTF-8 text")]) from None
    if "=" not in text:
        raise SpecError([Problem(Location(name, 1, 1), "", "expected PATH=VALUE, e.g. input.shape=[224,224,3]")])
    dotted, value_text = text.split("=", 1)
    parts: list[Any] = [int(p) if p.lstrip("-").isdigit() else p for p in dotted.strip().split(".")]
    if not dotted.strip() or any(p == "" for p in parts):
        raise SpecError([Problem(Location(name, 1, 1), dotted, "the path must be dot-separated keys, e.g. stages.0.repeats")])
    if len(parts) > MAX_DEPTH:  # deeper than any spec, and deep enough to exhaust Python's stack
        shown_path = dotted if len(dotted) <= 60 else dotted[:57] + "..."
        message = f"the path has {len(parts)} keys; a spec nests at most {MAX_DEPTH} levels"
        raise SpecError([Problem(Location(f"<--set {shown_path}=...>", 1, 1), shown_path, message)])
    value = load_yaml_text(value_text, name).data if value_text.strip() else None
    patch: Any = value
    for part in reversed(parts):
        patch = {part: patch}
    here = Location(name, 1, 1)
    document = Document(data=patch)
    for depth in range(len(parts) + 1):
        document.values[tuple(parts[:depth])] = here
        if depth:
            document.keys[tuple(parts[:depth])] = here
    _locate_all(document, value, tuple(parts), here)
    return document


def _locate_all(document: Document, value: Any, path: Path_, here: Location) -> None:
    document.values[path] = here
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        document.keys[path + (key,)] = here
        _locate_all(document, child, path + (key,), here)


def _copy_locations(target: Document, source: Document | None, path: Path_, patch_path: Path_) -> None:
    if source is None:
        return
    for table_target, table_source in ((target.values, source.values), (target.keys, source.keys)):
        for p, loc in table_source.items():
            if p[: len(patch_path)] == patch_path:
                table_target[path + p[len(patch_path) :]] = loc


def _copy_key_location(target: Document, source: Document | None, path: Path_, patch_path: Path_) -> None:
    if source is not None and patch_path in source.keys:
        target.keys[path] = source.keys[patch_path]


def _renumber_after_removal(target: Document, path: Path_, index: int) -> None:
    """Locations of a list's items after `index` move down by one; those of the item go."""
    depth = len(path)
    for table in (target.values, target.keys):
        moved = {}
        for p in list(table):
            if p[:depth] == path and len(p) > depth and isinstance(p[depth], int) and p[depth] >= index:
                location = table.pop(p)
                if p[depth] > index:
                    moved[p[:depth] + (p[depth] - 1,) + p[depth + 1:]] = location
        table.update(moved)


def _forget(target: Document, path: Path_) -> None:
    for table in (target.values, target.keys):
        for p in [p for p in table if p[: len(path)] == path and p != path]:
            del table[p]


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: Path_, value: Any) -> None:
    if not path:
        raise SpecError([Problem(Location("<--set>", 1, 1), "", "cannot replace the whole spec")])
    _get(data, path[:-1])[path[-1]] = value


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
