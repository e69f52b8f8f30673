"""Where one training step's time goes, by TensorFlow op: the profiler on one `train_on_batch`.

    .venv/bin/python bench/step_profile.py resnext50_32x4d [--batch 16] [--top 30] [--as-train]

The network is architectures/imagenet/NAME.yaml (10 classes) with the kernels `train` switches on
(bench/fused_kernels.py `make`: fused Adam and layers, depthwise grouped convolutions) and the other
grouped convolutions on `native`, the kernel `train`'s timing picks for ResNeXt-50 on the CPUs
measured so far; with --as-train also the per-shape timed switches, from the user's cache or timed
now (`switch_as_train`), so the step is the one `train` runs on this machine. Two steps warm up
(tracing), two are timed, one is profiled; prints the timed steps and the op names with the most
time, summed over TensorFlow's compute threads (a thread-second each; on 2 cores about twice the
wall time). Each event's own time: where events nest on a thread (an XLA call's `Start` around its
fusions), the inner ones' time is taken out of the outer one, so nothing counts twice (before
2026-12-06's seventeenth session this bench summed whole events: `Start` and
`ExecuteAsyncOnStream` then held their fusions' time again). bench/RESULTS.md has the figures.
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

from bench.fused_kernels import grouped_on_native, make, switch_as_train  # noqa: E402  (sets TensorFlow's environment first)


def own_times(events) -> collections.Counter:
    """Milliseconds of each name's own time among one thread's `events` ((start, end, name), in
    picoseconds): an event's duration less that of the events nested in it."""
    own: collections.Counter = collections.Counter()
    open_events: list[list] = []  # [end, name, nested time, duration], outermost first

    def close() -> None:
        end, name, nested, duration = open_events.pop()
        own[name] += (duration - nested) / 1e9

    for start, end, name in sorted(events, key=lambda event: (event[0], -event[1])):
        while open_events and open_events[-1][0] <= start:
            close()
        if open_events:
            open_events[-1][2] += end - start
        open_events.append([end, name, 0, end - start])
    while open_events:
        close()
    return own


def profiled(call):
    """TensorFlow's profiler over `call()`: (its seconds, the XSpace the profiler wrote)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]).read_bytes())
    return seconds, space


def line_events(plane, line, rename=lambda name: name) -> list:
    """One profiler line's events as own_times takes them: (start, end, renamed event name)."""
    return [(event.offset_ps, event.offset_ps + event.duration_ps, rename(plane.event_metadata[event.metadata_id].name))
            for event in line.events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--as-train", action="store_true", help="also train's per-shape timed switches")
    args = parser.parse_args()
    import keras
    import numpy as np

    model = make(args.network, [])
    if args.as_train:
        switch_as_train(model, args.batch, print)
    else:
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
    _, space = profiled(lambda: model.train_on_batch(x, y))
    by_op = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):
                by_op.update(own_times(line_events(plane, line, lambda name: name.split(":")[-1])))
    between = by_op.pop("Process", 0.0)  # the thread's whole run around its ops: its own time is between them
    print(f"op time on TensorFlow's compute threads: {sum(by_op.values()):.0f} ms ({between:.0f} ms between ops)")
    for name, ms in by_op.most_common(args.top):
        print(f"  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
