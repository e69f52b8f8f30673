"""Kernel-gradient cost of each distinct convolution of the documented ResNet-50, batch 32, on CPU.

    .venv/bin/python bench/kernel_gradients.py [--repeats 9]

For every distinct convolution shape in architectures/resnet50.yaml (64x64x3 input), in one
process with oneDNN on (as `cli.py train` runs):

  forward   the layer's forward pass alone
  tf        forward + kernel gradient with TensorFlow's kernels (oneDNN's backward-weights)
  fast      forward + kernel gradient as `train` computes it for the layers that
            archbuilder/training/cpu_kernels.py switches (kernel larger than its input)

Milliseconds are medians over --repeats calls of one tf.function each; `fast` is measured only
for the switched shapes. This shows where oneDNN's slow path is and what the switch saves; the
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
from archbuilder.spec.validate import load_checked_spec  # noqa: E402

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


def one_layer(layer, input_shape):
    """A model of one fresh convolution with `layer`'s settings, on `input_shape`."""
    inputs = keras.Input(input_shape)
    conv = keras.layers.Conv2D.from_config({**layer.get_config(), "name": "conv"})
    return keras.Model(inputs, conv(inputs)), conv


def measure(layer, repeats: int) -> dict:
    input_shape = tuple(layer.input.shape[1:])
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, *input_shape)).astype("float32"))
    model, conv = one_layer(layer, input_shape)
    upstream = tf.constant(rng.normal(size=(BATCH, *model.output_shape[1:])).astype("float32"))

    def kernel_gradient():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x) * upstream)
        # The loss is returned too, so the forward pass is not pruned away as unused.
        return loss, tape.gradient(loss, conv.kernel)

    forward, tf_gradient = tf.function(lambda: model(x)), tf.function(kernel_gradient)
    row = {"input": list(input_shape), "kernel": list(layer.kernel_size), "stride": list(layer.strides),
           "filters": layer.filters, "forward_ms": median_ms(lambda: forward().numpy(), repeats),
           "tf_ms": median_ms(lambda: tf_gradient()[1].numpy(), repeats)}
    if slow_kernel_gradient(conv):
        stock = tf_gradient()[1].numpy()
        use_fast_kernel_gradients(model)
        fast_function = tf.function(kernel_gradient)
        row["fast_ms"] = median_ms(lambda: fast_function()[1].numpy(), repeats)
        fast = fast_function()[1].numpy()
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
    for row in rows.values():
        print(json.dumps(row), flush=True)

if __name__ == "__main__":
    main()
