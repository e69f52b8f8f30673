"""Where archbuilder keeps what it can always make again: $ARCHBUILDER_CACHE_DIR, else
$XDG_CACHE_HOME/archbuilder, else ~/.cache/archbuilder (kernel timings, decoded images)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("ARCHBUILDER_CACHE_DIR"):
        return Path(os.environ["ARCHBUILDER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archbuilder"


def key_digest(key: dict) -> str:
    """The short name of a machine key in cache file and folder names (a cache for another key is
    another file, never read)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
