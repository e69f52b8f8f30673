"""Where archbuilder keeps what it can always make again: $ARCHBUILDER_CACHE_DIR, else
$XDG_CACHE_HOME/archbuilder, else ~/.cache/archbuilder (kernel timings, decoded images)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("ARCHBUILDER_CACHE_DIR"):
        return Path(os.environ["ARCHBUILDER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archbuilder"
