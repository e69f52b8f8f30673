"""One-off (twentieth session, Zen 4): does a thread faulting in fresh memory slow the Python trace
beside it? ResNet-152's training step (as `train` makes it) traced again and again in one process,
alternately alone and with a thread that takes GIB of new memory from TensorFlow's pool (held, so
each round's memory is fresh) and writes it with a GIL-free memset.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-07u/trace_beside_faults.py resnet152 32 3.5 3
"""
import ctypes
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu-avx512bf16-2026-12-06s"))
from first_call_setup import model_as_train  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

net, batch, gib, rounds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
model, x, y, _ = model_as_train(net, batch)
spec = (tf.TensorSpec((None, *x.shape[1:])), tf.TensorSpec((None, 10)))
kept = []


class Capsule:
    def __init__(self, tensor):
        self.capsule = tf.experimental.dlpack.to_dlpack(tensor)

    def __dlpack__(self, stream=None, **_):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)


def touch(report):
    started, left = time.perf_counter(), int(gib * 2**30)
    while left > 0:
        n = min(left, 2**28)
        tensor = tf.raw_ops.Empty(shape=[n // 4], dtype=tf.float32, init=False)
        ctypes.memset(np.from_dlpack(Capsule(tensor)).__array_interface__["data"][0], 0, n)
        kept.append(tensor)
        left -= n
    report.append(time.perf_counter() - started)


for round_ in range(rounds):
    for beside in (False, True) if round_ % 2 == 0 else (True, False):
        report = []
        thread = threading.Thread(target=touch, args=(report,)) if beside else None
        if thread:
            thread.start()
        started = time.perf_counter()
        tf.function(model.train_step).get_concrete_function(spec)
        trace = time.perf_counter() - started
        if thread:
            thread.join()
        print(f"round {round_ + 1} {'with a faulting thread' if beside else 'alone':24s} trace {trace:.2f} s"
              + (f", touch {gib} GiB {report[0]:.2f} s" if beside else ""), flush=True)
