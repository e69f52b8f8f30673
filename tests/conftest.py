"""pytest's hooks and fixtures for the suite; what tests import is in train_support.py."""

from __future__ import annotations

import os
import tempfile

import pytest

from train_support import SHARED

REFERENCE = SHARED / "reference"
NOTEBOOK = REFERENCE / "000_1f0476f30310bbb2.txt"

# Tests neither read nor write the user's cache folder (training/kernel_choice.py keeps timings
# there); subprocesses inherit this. Tests that check the cache point it at their own tmp_path.
_TEST_CACHE = tempfile.TemporaryDirectory(prefix="archbuilder-test-cache-")
os.environ["ARCHBUILDER_CACHE_DIR"] = _TEST_CACHE.name


# Worker processes for `-n auto` (pyproject.toml's addopts): one per core, at most MAX_WORKERS and
# as many as the memory holds. TensorFlow's thread pools already spread one test's ops over every
# core; what a second process overlaps is the single-threaded rest: Python building graphs (~0.9 ms
# an op), grappler, the CLI processes' start-ups, decoding and file writes. On the 2-core EPYC two
# workers ran the default suite in 349-389 s against 675 s in one process (bench/RESULTS.md,
# 2026-12-05), each test ~1.09x its time alone. A worker peaked at 2.4 GiB, 3 with the processes
# its tests start (5.5 GiB for both together, sampled every 0.5 s). Never more workers than cores:
# four on those 2 cores passed too but took 686 s against 579 s for two in the same hour, using
# twice the CPU time two had used in a faster hour (TensorFlow's thread pools spin while they
# wait for a core). Four at most is a guess for bigger machines that stays inside their memory.
MAX_WORKERS = 4
WORKER_PEAK_BYTES = 3 * 2**30


def pytest_xdist_auto_num_workers(config) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(cores, MAX_WORKERS, memory // WORKER_PEAK_BYTES))


@pytest.fixture(scope="session")
def notebook_text() -> str:
    return NOTEBOOK.read_text(encoding="utf-8")
