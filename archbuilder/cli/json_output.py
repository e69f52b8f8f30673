"""`--json` output that is JSON (RFC 8259): a model whose weights hold NaN (a training that
diverged) predicts NaN, which json.dumps writes as the bare word NaN that JSON parsers refuse.
Non-finite numbers are written null."""

from __future__ import annotations

import json
import math


def json_text(value, indent: int | None = None) -> str:
    return json.dumps(_finite(value), indent=indent, allow_nan=False)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
