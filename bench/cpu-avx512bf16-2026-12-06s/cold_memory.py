"""One-off (seventeenth session, Zen 4): what memory a process touches first costs TensorFlow's
allocations against numpy's, on this VM (free-page reporting hands freed memory to the host).

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/cold_memory.py IDLE_S tf|np [no-huge-pages]

After IDLE_S seconds idle (memory freed by earlier programs goes back to the host meanwhile), in
the given order: `tf`, one 2 GiB tf.fill and one add (4 GiB of new tensors, TensorFlow's CPU
allocator, its thread pool), and `np`, one 2 GiB numpy array written (numpy asks for transparent
huge pages; with `no-huge-pages` numpy is told not to); seconds of each, and the process's
AnonHugePages while it holds the memory.
"""

import sys
import time

import numpy as np
import tensorflow as tf

N = 512 * 2**20  # float32 values: 2 GiB


def huge_pages_kb() -> str:
    return next(line.split()[1] for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages"))


def tensorflow_tensors() -> tuple[float, str]:
    start = time.perf_counter()
    x = tf.fill([N], 1.0)
    y = x + 1.0
    float(y[0])
    return time.perf_counter() - start, huge_pages_kb()


def numpy_array() -> tuple[float, str]:
    start = time.perf_counter()
    a = np.empty(N, np.float32)
    a.fill(1.0)
    return time.perf_counter() - start, huge_pages_kb()


if sys.argv[3:] == ["no-huge-pages"]:
    np._core.multiarray._set_madvise_hugepage(False)
time.sleep(float(sys.argv[1]))
print("/sys/kernel/mm/transparent_hugepage/enabled:", open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip())
for name in (("tf", "np") if sys.argv[2] == "tf" else ("np", "tf")):
    seconds, huge = (tensorflow_tensors if name == "tf" else numpy_array)()
    print(f"{name} {seconds:.2f} s (AnonHugePages {huge} kB while held)")
