"""Imports run one way (README "Code map"): every module of the package is parsed with `ast`, and
each import it makes, at module level or inside a function, must name a module of its own tier or
a lower one:

    bottom <- spec <- layers <- plan <- keras, data <- training, export, diagrams <- api <- cli

`bottom` is the package's top-level helper modules, which know nothing of networks: errors.py,
atomic.py, file_kinds.py, runtime.py, output_paths.py (checks of output paths) and hdf5_files.py
(opening HDF5 files safely), cache_folder.py (where caches live), cpu_info.py (the CPU's name and
flags), xla_cache.py (XLA's compilations kept, set up before TensorFlow is imported) and native_lines.py
(native libraries' false alarms kept off a command's terminal). diagrams.py draws a built model, as export writes one, so it sits
with training and export; archbuilder/__init__.py re-exports the API, so it is the api's tier.

Also: spec/, layers/ and plan/ never import TensorFlow or Keras when imported (`validate` and
`info` stay instant), checked on the module-level imports they reach, transitively. Primitives
import Keras inside their `keras()` methods only.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "archbuilder"
TIERS = [
    ("bottom", ("errors", "atomic", "file_kinds", "runtime", "output_paths", "hdf5_files", "cache_folder", "cpu_info",
                "xla_cache", "native_lines")),
    ("spec", ("spec",)),
    ("layers", ("layers",)),
    ("plan", ("plan",)),
    ("keras/data", ("keras", "data")),
    ("training/export", ("training", "export", "diagrams")),
    ("api", ("api", "api_inputs", "__init__")),
    ("cli", ("cli",)),
]
TENSORFLOW = ("tensorflow", "keras", "tf_keras")
TF_FREE = ("spec", "layers", "plan")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the module imported, dotted
    file: Path
    line: int
    module_level: bool  # outside any function (a TYPE_CHECKING block counts as no import at run time)


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package_module(name: str) -> bool:
    return name in MODULES


def _imports(path: Path, package: Path = PACKAGE) -> list[Import]:
    source = _module_name(path, package)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for item in child.body:
                    visit_node(item, False)
                for item in child.orelse:
                    visit_node(item, module_level)
                continue
            visit_node(child, module_level)

    def visit_node(child: ast.AST, module_level: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                found.append(Import(source, alias.name, path, child.lineno, module_level))
        elif isinstance(child, ast.ImportFrom):
            base = _absolute(child, source, path)
            for alias in child.names:
                name = f"{base}.{alias.name}"
                found.append(Import(source, name if _is_package_module(name) else base, path, child.lineno, module_level))
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            visit(child, False)
        else:
            visit(child, module_level)

    visit(tree, True)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _absolute(node: ast.ImportFrom, source: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def tier_of(module: str) -> int | None:
    """The tier of an archbuilder module (None for anything outside the package)."""
    parts = module.split(".")
    if parts[0] != "archbuilder":
        return None
    first = parts[1] if len(parts) > 1 else "__init__"
    for index, (_, members) in enumerate(TIERS):
        if first in members:
            return index
    raise AssertionError(f"{module}: not in any tier of tests/test_import_order.py; add it to TIERS")


ALL_IMPORTS = [imp for path in MODULES.values() for imp in _imports(path)]


def test_every_module_has_a_tier():
    for module in MODULES:
        assert tier_of(module) is not None, module


def test_imports_run_one_way():
    against = []
    for imp in ALL_IMPORTS:
        low, high = tier_of(imp.target), tier_of(imp.source)
        if low is not None and low > high:
            against.append(f"{imp.file.relative_to(PACKAGE.parent)}:{imp.line}: {imp.source} ({TIERS[high][0]}) "
                           f"imports {imp.target} ({TIERS[low][0]})")
    assert not against, "imports against the order " + " <- ".join(t[0] for t in TIERS) + ":\n" + "\n".join(against)


def _module_level_closure(start: str) -> dict[str, Import | None]:
    """Every module importing `start` imports at module level, with the import that reached it."""
    reached: dict[str, Import | None] = {start: None}
    queue = [start]
    by_source: dict[str, list[Import]] = {}
    for imp in ALL_IMPORTS:
        if imp.module_level:
            by_source.setdefault(imp.source, []).append(imp)
    while queue:
        module = queue.pop()
        for imp in by_source.get(module, ()):
            # importing archbuilder.a.b runs archbuilder/__init__ and archbuilder/a/__init__ too
            parts = imp.target.split(".")
            for end in range(1, len(parts) + 1):
                name = ".".join(parts[:end])
                if name not in reached:
                    reached[name] = imp
                    if name in MODULES:
                        queue.append(name)
    return reached


@pytest.mark.parametrize("module", [m for m in MODULES if m.split(".")[1:2] and m.split(".")[1] in TF_FREE])
def test_spec_layers_and_plan_import_no_tensorflow(module):
    reached = _module_level_closure(module)
    heavy = [(name, imp) for name, imp in reached.items() if name.split(".")[0] in TENSORFLOW]
    assert not heavy, "\n".join(f"{imp.file.relative_to(PACKAGE.parent)}:{imp.line}: {imp.source} imports {name} "
                                f"at import time (reached from {module})" for name, imp in heavy)


def test_spec_and_plan_import_no_tensorflow_even_inside_functions():
    """Only primitives' `keras()` methods (layers/) may reach for Keras; spec/ and plan/ never do."""
    bad = [imp for imp in ALL_IMPORTS if imp.source.split(".")[1:2] in (["spec"], ["plan"])
           and (imp.target.split(".")[0] in TENSORFLOW or tier_of(imp.target) not in (None, 0, 1, 2, 3))]
    assert not bad, "\n".join(f"{i.file.relative_to(PACKAGE.parent)}:{i.line}: {i.source} imports {i.target}" for i in bad)


def test_the_check_sees_imports_inside_functions_and_resolves_them(tmp_path):
    """What the checks above rest on: imports inside functions are found, with their lines, and
    `from archbuilder import keras` is the package archbuilder.keras."""
    found = {(imp.target, imp.module_level) for imp in _imports(PACKAGE / "spec" / "source.py")}
    assert ("yaml", True) in found and ("archbuilder.errors", True) in found
    probe = tmp_path / "archbuilder" / "spec" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import os\n\ndef f():\n    from archbuilder import keras\n    from archbuilder.plan.graph import Plan\n")
    imports = _imports(probe, tmp_path / "archbuilder")
    assert [(i.source, i.target, i.line, i.module_level) for i in imports] == [
        ("archbuilder.spec.probe", "os", 1, True), ("archbuilder.spec.probe", "archbuilder.keras", 4, False),
        ("archbuilder.spec.probe", "archbuilder.plan.graph", 5, False)]
    assert all(tier_of(i.target) > tier_of(i.source) for i in imports[1:])
