"""One-off (twentieth session, Zen 4): what the first training call does that the second does not,
with the step's memory already taken from the system (TOUCH_GIB of TensorFlow's pool filled and
freed before the first call). TensorFlow's profiler over the first and the second call; own time
per event name (bench/step_profile.py `own_times`) summed over the compute threads and the Python
thread; prints the names whose own time grew the most from the second call to the first.

    TOUCH_GIB=6 .venv/bin/python bench/cpu-avx512bf16-2026-12-07u/first_vs_second.py resnet152 32
"""
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu-avx512bf16-2026-12-06s"))
from first_call_setup import model_as_train  # noqa: E402

import tensorflow as tf  # noqa: E402

from bench.step_profile import line_events, own_times, profiled  # noqa: E402


def profiled_own_times(call):
    seconds, space = profiled(call)
    own = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for name, ms in own_times(line_events(plane, line)).items():
                own[(line.name.split("/")[0][:20], name.split(":")[0][:60])] += ms
    return seconds, own


net, batch = sys.argv[1], int(sys.argv[2])
model, x, y, variables = model_as_train(net, batch)
gib = float(os.environ.get("TOUCH_GIB", "0"))
if gib:
    started = time.perf_counter()
    held = [tf.fill([2**28 // 4], 1.0) for _ in range(int(gib * 4))]  # 256 MiB each
    del held
    print(f"touched {gib} GiB of the pool in {time.perf_counter() - started:.2f} s")
first, own1 = profiled_own_times(lambda: model.train_on_batch(x, y))
second, own2 = profiled_own_times(lambda: model.train_on_batch(x, y))
print(f"first call {first:.2f} s, second {second:.2f} s; own ms in all: {sum(own1.values()):.0f} / {sum(own2.values()):.0f}")
growth = collections.Counter({k: own1[k] - own2.get(k, 0.0) for k in own1})
for (line, name), ms in growth.most_common(30):
    print(f"{ms:9.1f} ms more  ({own1[(line, name)]:8.1f} first, {own2.get((line, name), 0.0):8.1f} second)  {line:20s} {name}")
