"""Block parameters: a value checked against its declared type and bounds. Imports no TensorFlow."""

from __future__ import annotations

import math
from typing import Any

from archbuilder.spec.expressions import MAX_MAGNITUDE


class ParamError(ValueError):
    pass


def check_value(param, value: Any) -> Any:
    """`value` as the parameter's type (an integral float becomes an int); raises ParamError."""
    kind = param.type
    if kind.endswith("_list"):
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"expected a list of {kind[:-5]}s (received {_show(value)})")
        if param.length is not None and len(value) != param.length:
            raise ParamError(f"takes {param.length} values, got {len(value)} (received {_show(value)})")
        if len(value) > 64:
            raise ParamError(f"a list parameter holds at most 64 values, got {len(value)}")
        return [_scalar(param, kind[:-5], item) for item in value]
    return _scalar(param, kind, value)


def _scalar(param, kind: str, value: Any) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParamError(f"expected true or false (received {_show(value)})")
        return value
    if kind == "choice":
        if not isinstance(value, str) or value not in param.choices:
            raise ParamError(f"expected one of {', '.join(param.choices)} (received {_show(value)})")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(f"expected {'an integer' if kind == 'int' else 'a number'} (received {_show(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamError(f"expected a finite number (received {value})")
    if abs(value) > MAX_MAGNITUDE:  # before float(): YAML's integers are unbounded, floats are not
        raise ParamError(f"{_show(value)} exceeds {MAX_MAGNITUDE:,}")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ParamError(f"expected an integer (received {value})")
            value = int(value)
    else:
        value = float(value)
    if param.min is not None and value < param.min:
        raise ParamError(f"must be ≥ {_num(param.min)} (received {_show(value)})")
    if param.max is not None and value > param.max:
        raise ParamError(f"must be ≤ {_num(param.max)} (received {_show(value)})")
    return value


def _num(value: float) -> str:
    # an int stays one: `min: 10**400` has no float, and would overflow float()
    if isinstance(value, int):
        return _show(value)
    return str(int(value)) if value.is_integer() else str(value)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
