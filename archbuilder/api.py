"""The Python API: one call from a spec (a file or a dict) to a checked spec, its figures, or a model.

    import archbuilder
    model = archbuilder.build("architectures/resnet50.yaml", overrides=["classes=10"])
    archbuilder.info({"name": "net", ...})["total_params"]

Bad input raises `archbuilder.SpecError` (a `UserError`) whose `problems` are the same located
lines the command line prints. Only `build` imports TensorFlow, and only when called, so
`import archbuilder` stays instant.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from archbuilder.errors import UserError

if TYPE_CHECKING:
    import keras

    from archbuilder.plan.validate import CheckedSpec


def load_spec(spec: str | os.PathLike | Mapping[str, Any], overrides: Iterable[str] = (),
              max_memory: int | str | None = None) -> "CheckedSpec":
    """Validate a spec file (or a dict holding a spec) with `--set`-style overrides; return the
    checked spec and its plan. A dict's `extends` is relative to the current folder. Arguments of
    the wrong type raise `archbuilder.UserError`; one string is one override."""
    from archbuilder.api_inputs import max_memory_argument, overrides_argument, spec_argument
    from archbuilder.plan.validate import check_memory, load_checked_data, load_checked_spec

    overrides, max_memory = overrides_argument(overrides), max_memory_argument(max_memory)
    if _is_checked(spec):  # already checked: overrides would need the document read again
        if overrides:
            raise UserError("overrides apply to a spec file or dict; this spec was already checked by load_spec: "
                            "give the overrides to load_spec (or pass the file or dict here)")
        if max_memory is not None:
            check_memory(spec.plan, spec.document, max_memory)
        return spec
    spec = spec_argument(spec)
    if isinstance(spec, dict):
        return load_checked_data(spec, overrides, max_memory)
    return load_checked_spec(spec, overrides, max_memory)


def info(spec, overrides: Iterable[str] = (), max_memory: int | str | None = None, per_block: bool = False) -> dict:
    """What `info --json` prints: name, input shape, totals, MACs and one row per stage (or block)."""
    from archbuilder.plan import report

    checked = load_spec(spec, overrides, max_memory)
    labels = checked.spec.stage_labels()
    return {
        "name": checked.spec.name, "input_shape": list(checked.spec.input.shape),
        **report.totals_json(checked.plan), "rows": [row.as_json() for row in report.rows(checked.plan, labels, per_block=per_block)],
    }


def build(spec, overrides: Iterable[str] = (), max_memory: int | str | None = None) -> "keras.Model":
    """The Keras model of a spec file, a dict, or a spec already checked by `load_spec`."""
    checked = load_spec(spec, overrides, max_memory)
    from archbuilder.keras.graph import build_model

    return build_model(checked.spec, checked.plan)


def _is_checked(value) -> bool:
    from archbuilder.plan.validate import CheckedSpec

    return isinstance(value, CheckedSpec)
