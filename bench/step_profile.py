"""Where one training step's time goes, by TensorFlow op: the profiler on one `train_on_batch`.

    .venv/bin/python bench/step_profile.py resnext50_32x4d [--batch 16] [--top 30]

The network is architectures/imagenet/NAME.yaml (10 classes) with the kernels `train` switches on
(bench/fused_kernels.py `make`: fused Adam and layers, depthwise grouped convolutions) and the other
grouped convolutions on `native`, the kernel `train`'s timing picks for ResNeXt-50 on the CPUs
measured so far. Two steps warm up (tracing), two are timed, one is profiled; prints the timed
steps and the op names with the most time, summed over TensorFlow's compute threads (a thread-
second each; on 2 cores about twice the wall time). bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import argparse
import collections
import glob
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fused_kernels import grouped_on_native, make  # noqa: E402  (sets TensorFlow's environment first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    model = make(args.network, [])
    grouped_on_native(model)
    x = np.random.RandomState(0).uniform(0, 255, (args.batch, *model.input_shape[1:])).astype("float32")
    y = keras.utils.to_categorical(np.arange(args.batch) % 10, 10)
    for _ in range(2):
        model.train_on_batch(x, y)
    steps = []
    for _ in range(2):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        steps.append(round(time.perf_counter() - start, 2))
    print(f"{args.network}, batch {args.batch}: steps of {steps} s")
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]).read_bytes())
    by_op = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name.split(":")[-1]
                    if name != "Process":  # the thread's whole run, around its ops
                        by_op[name] += event.duration_ps / 1e9
    print(f"op time on TensorFlow's compute threads: {sum(by_op.values()):.0f} ms")
    for name, ms in by_op.most_common(args.top):
        print(f"  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
