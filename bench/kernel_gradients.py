"""Kernel-gradient cost of each distinct convolution of the documented ResNet-50, batch 32, on CPU.

    .venv/bin/python bench/kernel_gradients.py [--repeats 9]

For every distinct convolution shape in architectures/resnet50.yaml (64x64x3 input), in one
process with oneDNN on (as `cli.py train` runs):

  forward   the layer's forward pass alone
  tf        forward + kernel gradient with TensorFlow's kernels (oneDNN's backward-weights)
  fast      forward + kernel gradient as archbuilder/training/cpu_kernels.py computes it, for
            the candidates of the switch (kernel larger than its input); `switch_pays` is what
            `train` would decide from these two (training/kernel_choice.py)

Milliseconds are medians over --repeats calls of one tf.function each (for candidates, the two
paths interleaved call by call, as `train` times them); `fast` is measured only for candidates.
The first line is the machine key (CPU, TensorFlow, oneDNN) the figures belong to. This shows where oneDNN's slow path is and what the switch saves; the
end-to-end effect on training is bench/train_speed.py's `cli` vs `cli-tf-kernels`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archbuilder.keras.graph import build_model  # noqa: E402  (sets TensorFlow's environment first)
from archbuilder.training.cpu_kernels import slow_kernel_gradient, use_fast_kernel_gradients  # noqa: E402
from archbuilder.training.kernel_choice import (  # noqa: E402
    kernel_gradient_function, machine_key, single_convolution, time_kernel_gradients,
)
from archbuilder.plan.validate import load_checked_spec  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

BATCH = 32


def median_ms(function, repeats: int) -> float:
    function()  # traces
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 2)


def measure(layer, repeats: int) -> dict:
    model, conv, x, upstream = single_convolution(layer, BATCH)
    forward = tf.function(lambda: model(x))
    row = {"input": list(layer.input.shape[1:]), "kernel": list(layer.kernel_size), "stride": list(layer.strides),
           "filters": layer.filters, "forward_ms": median_ms(lambda: forward().numpy(), repeats)}
    if not slow_kernel_gradient(layer):
        stock = kernel_gradient_function(model, conv, x, upstream)
        row["tf_ms"] = median_ms(lambda: stock()[1].numpy(), repeats)
        return row
    # A candidate of the switch: both paths timed as `train` times them (interleaved), and compared.
    timing = time_kernel_gradients(layer, BATCH, repeats)
    row.update(tf_ms=timing.tensorflow_ms, fast_ms=timing.matmul_ms, switch_pays=timing.switch)
    stock = kernel_gradient_function(model, conv, x, upstream)()[1].numpy()
    use_fast_kernel_gradients(model)
    fast = kernel_gradient_function(model, conv, x, upstream)()[1].numpy()
    row["max_relative_difference"] = float(np.abs(fast - stock).max() / np.abs(stock).max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    network = build_model(load_checked_spec(ROOT / "architectures" / "resnet50.yaml").spec)
    # One row per distinct shape, measured on its first layer; the count says how many share it.
    rows: dict[tuple, dict] = {}
    for layer in network.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        key = (tuple(layer.input.shape[1:]), layer.kernel_size, layer.strides, layer.padding, layer.filters)
        if key not in rows:
            rows[key] = {"first_layer": layer.name, "layers": 0, **measure(layer, args.repeats)}
        rows[key]["layers"] += 1
    print(json.dumps({"machine": machine_key()}), flush=True)
    for row in rows.values():
        print(json.dumps(row), flush=True)

if __name__ == "__main__":
    main()
