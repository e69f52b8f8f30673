"""`--cache memory|disk|none|auto`: where decoded images live while a run trains. No TensorFlow.

    memory  decoded once, held as one uint8 array (and TensorFlow's copy of it): the fastest epochs
    disk    decoded once into a cache folder (data.disk_cache), streamed from there
    none    streamed from the image files, decoded every epoch (data.stream)
    auto    memory where the decoded set fits in MEMORY_SHARE of this machine's memory and under
            the memory limit with the model's training estimate; none otherwise (the default)

The memory guard counts what each choice holds: with `memory`, the decoded images HELD_COPIES
times; streamed, the batches in flight (stream.PARALLEL_BATCHES being decoded, PREFETCH_BATCHES
waiting, one in the model), as uint8 and as the float32 the model reads.
"""

from __future__ import annotations

import math
import os

from archbuilder.errors import UserError

CACHE_CHOICES = ("auto", "memory", "disk", "none")
MEMORY_SHARE = 0.25  # of the machine's physical memory, the most `auto` holds decoded images in
# The in-memory path's peak, in copies of the decoded set: the numpy array, the constant tf.data
# gathers batches from, and what TensorFlow makes of that constant while fit sets the dataset up.
# Measured: one epoch on 1,500 generated 400x400 JPEGs at 384x384 (633 MiB decoded) peaked at
# 3,043 MiB with --cache memory and at 1,066 MiB streamed: 3.2 copies beyond the process's own
# ~1 GB (tests/test_streaming.py's generator; 2 cores, loaded). Counted as 4.
HELD_COPIES = 4
_STREAMED_BYTES_PER_VALUE = 1 + 4  # a batch in flight as uint8, then as float32 (x / 255)


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux or macOS
        return 16 * 2**30


class MemoryBudget:
    """The memory limit, less the model's training estimate and the data chosen so far."""

    def __init__(self, limit: int | None, model_bytes: int = 0, batch_size: int = 32):
        self.limit = limit
        self.used = model_bytes
        self.batch_size = batch_size

    def choose(self, choice: str, count: int, shape: tuple[int, int, int], origin: str) -> str:
        """`choice` resolved for `count` images of `shape` read from `origin`; what it holds is counted."""
        from archbuilder.data.stream import PARALLEL_BATCHES, PREFETCH_BATCHES
        from archbuilder.plan.size_guard import format_bytes

        image = math.prod(shape)
        held = HELD_COPIES * count * image
        if choice == "auto":
            fits = held <= MEMORY_SHARE * physical_memory() and (self.limit is None or self.used + held <= self.limit)
            choice = "memory" if fits else "none"
        if choice != "memory":
            held = (PARALLEL_BATCHES + PREFETCH_BATCHES + 1) * self.batch_size * image * _STREAMED_BYTES_PER_VALUE
        if self.limit is not None and self.used + held > self.limit:
            what = (f"the decoded images of {origin} ({count} at {'x'.join(map(str, shape))}, held "
                    f"{HELD_COPIES} times: {format_bytes(held)})" if choice == "memory"
                    else f"the streamed batches of {origin} ({format_bytes(held)})")
            hint = "use --cache none or --cache disk to stream them, or " if choice == "memory" else ""
            raise UserError(
                f"{what} and the model's training estimate ({format_bytes(self.used)} with what is already "
                f"counted) exceed the memory limit of {format_bytes(self.limit)}; {hint}raise it with --max-memory"
            )
        self.used += held
        return choice
