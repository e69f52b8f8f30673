"""The first training step's memory, touched on the idle core while the step is traced.

With oneDNN on (archbuilder's default on CPU), TensorFlow's CPU allocator keeps what it allocates in
a pool (a best-fit allocator; `tf.config.experimental.get_memory_info("CPU:0")` reports it) and never
gives it back. So the first training step is the one that takes the step's memory from the system
and pays its page faults, and every later step reuses it: ResNet-152 at batch 32 needs 5.3 GiB for
its step, and its first step was ~3 s longer for it on the Zen 4 here (bench/RESULTS.md, eighteenth
session). Before that step Python traces it and TensorFlow optimizes the graph, each on one core,
for seconds. A thread touches the step's memory meanwhile: it fills tensors as large as the step's
peak and frees them into the pool, where the step finds them.

How much: the step's peak as the previous run of the same model measured it (the pool's bytes in
use at the end of its first step, above what was in use when the measurement began), kept per
model and batch size in the user's cache folder, one file per machine key
(`first-step-memory-<hash>.json`). A run without an entry touches nothing and records one; every
run records its own, so an entry follows the model's kernels as they change. What is touched is
no more than the step itself takes, so the run never holds more memory than it would without.
Without the pool (oneDNN off: TensorFlow's plain allocator hands freed memory back, and
`get_memory_info` has nothing to say) or with a GPU nothing is done.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import keras
import tensorflow as tf

from archbuilder.plan.size_guard import format_bytes
from archbuilder.training.instance_switch import gpu_present
from archbuilder.training.kernel_choice import cache_path, machine_key, read_shapes, write_shapes

CACHE_FORMAT = 1
CACHE_NAME = "first-step-memory"
MIN_BYTES = 16 * 2**20  # below this the faults cost a few milliseconds: not worth a thread
CHUNK_BYTES = 256 * 2**20  # one fill each; the thread checks for a stop between them
KEPT_ENTRIES = 256  # the most recently used models; a cache, not a history


def pool_in_use() -> int | None:
    """Bytes TensorFlow's CPU pool has handed out now, or None where there is no pool."""
    try:
        return int(tf.config.experimental.get_memory_info("CPU:0")["current"])
    except (ValueError, tf.errors.OpError):  # "Allocator stats not available": no pool
        return None


def model_key(model, batch_size: int, replicas: int) -> str:
    """What decides the step's memory on a machine: the model's layers and dtypes, the batch (the
    layers' configuration, not `to_json`, whose compile settings name the optimizer per process)."""
    layers = json.dumps(model.get_config(), sort_keys=True, default=str)
    text = f"{layers}|batch {batch_size}|replicas {replicas}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _valid_entry(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0
            and isinstance(entry.get("used"), (int, float)))


def touch(total: int, stop: threading.Event) -> None:
    """Take `total` bytes from the pool, writing every page, then give them back to the pool."""
    held = []
    left = total
    while left >= 4 and not stop.is_set():
        values = min(left, CHUNK_BYTES) // 4
        held.append(tf.fill([values], 0.0))  # float32; eager on CPU: written when fill returns
        left -= values * 4
    del held


class FirstStepMemory(keras.callbacks.Callback):
    """Touches what the previous run's first step took (a thread, started at construction, before
    the step is traced) and records what this run's first step takes."""

    def __init__(self, model, batch_size: int, replicas: int = 1):
        super().__init__()
        self.touched = 0  # bytes touched before the first step (0: none)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._base: int | None = None  # pool bytes in use when the measurement began
        self._recorded = False
        if gpu_present() or pool_in_use() is None:
            self._key = None
            return
        self._machine = machine_key()
        self._path = cache_path(self._machine, CACHE_NAME)
        self._key = model_key(model, batch_size, replicas)
        entry = read_shapes(self._path, self._machine, CACHE_FORMAT, _valid_entry).get(self._key)
        if entry is not None and entry["bytes"] >= MIN_BYTES:
            self._thread = threading.Thread(target=self._touch_then_measure, args=(entry["bytes"],),
                                            name="archbuilder-first-step-memory", daemon=True)
            self._thread.start()

    def _touch_then_measure(self, total: int) -> None:
        try:
            touch(total, self._stop)
            self.touched = total if not self._stop.is_set() else 0
        except (tf.errors.OpError, MemoryError):  # out of memory: the step will say so itself
            self.touched = 0
        self._start_measuring()

    def _start_measuring(self) -> None:
        tf.config.experimental.reset_memory_stats("CPU:0")  # the peak starts again from now
        self._base = pool_in_use()

    def on_train_begin(self, logs=None):
        if self._key is not None and self._thread is None:
            self._start_measuring()

    def on_train_batch_end(self, batch, logs=None):
        if self._key is None or self._recorded:
            return
        self._recorded = True
        if self._thread is not None and self._thread.is_alive():
            return  # still touching: the peak would count the touched tensors too
        peak = int(tf.config.experimental.get_memory_info("CPU:0")["peak"])
        entries = read_shapes(self._path, self._machine, CACHE_FORMAT, _valid_entry)
        entries[self._key] = {"bytes": max(0, peak - (self._base or 0)), "used": round(time.time())}
        newest = sorted(entries, key=lambda name: entries[name]["used"], reverse=True)[:KEPT_ENTRIES]
        write_shapes(self._path, self._machine, CACHE_FORMAT, {name: entries[name] for name in newest})

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.finish()

    def finish(self) -> None:
        """Stop touching (after the current fill) and wait for the thread: nothing of it outlives fit,
        however fit ends (an error, Ctrl-C during the trace)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def describe(self) -> str:
        """For the "graph ready" line: what was touched before the first step, if anything."""
        return f"; {format_bytes(self.touched)} of its memory touched while it was traced" if self.touched else ""
