"""Where `mixed_bfloat16` pays: zoo networks' training steps in float32 and in bfloat16, in one process.

    .venv/bin/python bench/precision_speed.py [--networks resnet50_keras,efficientnet_b0] [--batch 32] [--steps 8]

For each network, two models from architectures/imagenet/NAME.yaml (10 classes, the same seed):
one built under float32, one under `mixed_bfloat16` (what `training.precision` sets), each with
what `train` switches (bench/fused_kernels.py `make`; grouped convolutions that are not depthwise
on `native`, the kernel `train`'s timing picks on the CPUs measured). They train on the same random
batch, alternating (each round starts with the other one). Prints each model's median step (the
first two dropped: tracing) and the median per-round ratio float32 / bfloat16 (above 1: bfloat16
is faster). On a CPU without AVX512_BF16 TensorFlow emulates bfloat16, and expect it slower
everywhere. bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fused_kernels import grouped_on_native, make  # noqa: E402  (sets TensorFlow's environment first)
from bench.zoo_speed import machine  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")


def build(network: str, precision: str):
    from archbuilder.training.precision import precision_policy

    with precision_policy(precision):  # layers take the global policy when they are made
        model = make(network, [])
    grouped_on_native(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="resnet50_keras,efficientnet_b0,mobilenetv2,convnext_tiny,vit_b16")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    if args.steps < 4:
        parser.error("--steps must be at least 4 (two are dropped: tracing)")
    import keras
    import numpy as np

    print(machine(), flush=True)
    for network in args.networks.split(","):
        models = {precision: build(network, precision) for precision in PRECISIONS}
        shape = models["float32"].input_shape[1:]
        x = np.random.RandomState(0).uniform(0, 255, (args.batch, *shape)).astype("float32")
        y = keras.utils.to_categorical(np.arange(args.batch) % 10, 10)
        times = {precision: [] for precision in PRECISIONS}
        for step in range(args.steps):
            for precision in (PRECISIONS if step % 2 == 0 else reversed(PRECISIONS)):
                start = time.perf_counter()
                models[precision].train_on_batch(x, y)
                times[precision].append(time.perf_counter() - start)
        medians = {precision: statistics.median(times[precision][2:]) for precision in PRECISIONS}
        ratios = [a / b for a, b in zip(times["float32"][2:], times["mixed_bfloat16"][2:])]
        print(f"{network}, batch {args.batch}: float32 {medians['float32']:.3f} s, mixed_bfloat16 "
              f"{medians['mixed_bfloat16']:.3f} s a step; float32 / bfloat16 median per round "
              f"{statistics.median(ratios):.2f}", flush=True)
        del models
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
