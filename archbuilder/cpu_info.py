"""The running CPU as /proc/cpuinfo names it, without TensorFlow (the kernel caches' machine keys,
the XLA cache's folder, train's notes on bfloat16 emulation)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def cpuinfo() -> tuple[str, list[str]]:
    """Model name and flags of the first CPU in /proc/cpuinfo (Linux); empty elsewhere."""
    model, flags = "", []
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name == "flags" and not flags:
            flags = sorted(value.split())
    return model, flags


def cpu_key(model: str, flags: list[str]) -> dict:
    """The CPU as every cache's machine key names it (kernel timings, XLA's compilations): its model
    name and a short digest of its flags (`cpuinfo()`'s two values)."""
    return {"cpu": model, "flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16]}
