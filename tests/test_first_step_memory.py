"""archbuilder/training/first_step_memory.py: the memory a run's first training step took, recorded
per model and touched by a thread in the next run while its step is traced. No timings here
(bench/RESULTS.md has them); these check what the warm-up rests on (TensorFlow's CPU pool keeps and
hands out again what was touched), what is recorded and touched, and that it stays out of the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from train_support import REPO, TINY_SPEC, image_folder, invoke, run_cli

# The tiny spec at 128x128 with batch 32: a first step of ~30-40 MiB, above MIN_BYTES.
LARGER = ("--set", "input.shape=[128,128,3]", "--set", "training.batch_size=32")

_POOL = """
import sys
sys.path.insert(0, {repo!r})
import threading
from archbuilder.runtime import import_tensorflow_quietly
tf = import_tensorflow_quietly()
from archbuilder.training.first_step_memory import pool_in_use, touch

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

MiB = 2**20
start, in_use = rss(), pool_in_use()
touch(256 * MiB, threading.Event())
touched = rss()
a = tf.fill([64 * MiB], 1.0)  # 256 MiB
reused = rss()
b = tf.fill([64 * MiB], 1.0)  # another 256 MiB while a is held
fresh = rss()
print(in_use, pool_in_use() - 512 * MiB, (touched - start) // MiB, (reused - touched) // MiB, (fresh - reused) // MiB)
"""


def _pool_figures(**env) -> list[int]:
    result = subprocess.run([sys.executable, "-c", _POOL.format(repo=str(REPO))], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return [int(value) for value in result.stdout.split()]


def test_touched_memory_stays_in_the_pool_and_serves_the_next_tensors():
    """What the warm-up rests on: memory `touch` took (256 MiB, every page written) is resident
    and back in TensorFlow's pool afterwards, so a tensor of that size costs no new memory, while
    a second one, with the first still held, does."""
    before, after, touched, reused, fresh = _pool_figures()
    assert after == before  # the pool hands out only the two tensors now: touch let go of its own
    assert touched >= 250  # MiB resident after touching 256 (a few MiB of other allocations aside)
    assert reused < 16  # served from the touched pages (TensorFlow's own small allocations aside)
    assert fresh >= 250  # a tensor beyond what was touched takes new pages: the check can fail


def _entries(cache) -> dict:
    (path,) = cache.glob("first-step-memory-*.json")
    return json.loads(path.read_text())["shapes"]


def test_a_run_records_its_first_steps_memory_and_the_next_run_touches_it(tmp_path, monkeypatch):
    from archbuilder.plan.size_guard import format_bytes
    from archbuilder.training.first_step_memory import KEPT_ENTRIES, MIN_BYTES, CACHE_NAME, CACHE_FORMAT
    from archbuilder.training.kernel_choice import cache_path, machine_key

    cache = tmp_path / "cache"
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(cache))
    # A full cache of other models' entries, the oldest used at time 1: the new entry replaces it.
    others = {f"other{i:03d}": {"bytes": 2**30, "used": i + 1} for i in range(KEPT_ENTRIES)}
    path = cache_path(machine_key(), CACHE_NAME)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": CACHE_FORMAT, "machine": machine_key(), "shapes": others}))
    photos = image_folder(tmp_path / "images", per_class=12)

    first = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run1", "--epochs", "1", *LARGER)
    assert first.exit_code == 0, first.output
    assert "touched while it was traced" not in first.output  # nothing recorded for this model yet
    entries = _entries(cache)
    assert len(entries) == KEPT_ENTRIES and "other000" not in entries and "other001" in entries
    (new,) = set(entries) - set(others)
    recorded, used = entries[new]["bytes"], entries[new]["used"]
    # The step's activations alone: 32 images x 64x64x8 float32 after the stem = 4 MiB a tensor,
    # several kept for the gradient; and no more than the whole training memory could be.
    assert MIN_BYTES <= recorded < 2**30

    second = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run2", "--epochs", "1", *LARGER)
    assert second.exit_code == 0, second.output
    assert f"; {format_bytes(recorded)} of its memory touched while it was traced" in second.output
    assert _entries(cache)[new]["used"] >= used  # measured again, after the touching ended


def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path, monkeypatch):
    from archbuilder.training.first_step_memory import CACHE_NAME
    from archbuilder.training.kernel_choice import cache_path, machine_key

    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path / "cache"))
    path = cache_path(machine_key(), CACHE_NAME)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"format": 1, "shapes": {"x": {"bytes": "all"')
    photos = image_folder(tmp_path / "images", per_class=12)
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--epochs", "1", *LARGER)
    assert result.exit_code == 0, result.output
    assert "touched while it was traced" not in result.output
    assert len(_entries(tmp_path / "cache")) == 1


def test_the_thread_ends_with_fit_and_holds_nothing(tmp_path, monkeypatch):
    """`finish` (fit's end, however it ends) stops the touching and waits for it: no thread left, and
    the pool holds what it held before (the touched tensors given back)."""
    import keras

    from archbuilder.training.first_step_memory import CACHE_FORMAT, CACHE_NAME, FirstStepMemory, model_key, pool_in_use
    from archbuilder.training.kernel_choice import cache_path, machine_key

    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path / "cache"))
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = cache_path(machine_key(), CACHE_NAME)
    path.parent.mkdir(parents=True)
    entry = {"bytes": 2**30, "used": 1}
    path.write_text(json.dumps({"format": CACHE_FORMAT, "machine": machine_key(),
                                "shapes": {model_key(model, 4, 1): entry}}))
    before = pool_in_use()
    with FirstStepMemory(model, 4) as memory:
        assert memory._thread is not None
    assert not memory._thread.is_alive()
    assert pool_in_use() == before
    assert memory.touched in (0, 2**30)  # all of it, or nothing where it was stopped first


def test_without_tensorflows_pool_nothing_is_touched_or_recorded(tmp_path):
    """oneDNN off: TensorFlow's plain allocator gives freed memory back at once (and has no
    statistics), so there is nothing to warm up; the run trains as before."""
    photos = image_folder(tmp_path / "images", per_class=12)
    result = run_cli("train", str(TINY_SPEC), "--data", str(photos), "--out", str(tmp_path / "run"), "--epochs", "1",
                     *LARGER, env={"TF_ENABLE_ONEDNN_OPTS": "0", "ARCHBUILDER_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "graph ready: the first step ended" in result.stdout + result.stderr
    assert not list((tmp_path / "cache").glob("first-step-memory-*.json"))
