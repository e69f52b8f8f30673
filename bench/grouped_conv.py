"""Forward + backward of each distinct grouped convolution of the zoo, Keras's way and ours, on CPU.

    .venv/bin/python bench/grouped_conv.py [--specs convnext_tiny,resnext50_32x4d] [--size 224]
        [--batch 32] [--repeats 5] [--kernels keras,depthwise,depthwise_sum,split,native] [--parts]

For every distinct grouped convolution shape (Conv2D with groups > 1) of each architectures/imagenet
spec at input SIZE x SIZE, in one process with oneDNN as `cli.py train` has it, milliseconds of one
tf.function computing the forward pass and the gradients of input and kernel (what a training
step needs), median of --repeats calls, the kernels interleaved call by call:

  keras          Keras 3.15's own op: the convolution inside a function compiled by XLA
                 (keras/src/backend/tensorflow/nn.py `conv`); `keras_first_s` is its first call
                 (trace + XLA compile + one step), what the first training step pays per shape
  depthwise ...  archbuilder/training/grouped_conv.py's kernels (`depthwise` only where groups =
                 input channels); null: the kernel failed here (e.g. `native` without a CPU kernel)

With --parts, each shape of a grouped convolution whose groups are fewer than its channels is
timed instead part by part, forward, input gradient and kernel gradient apart (TensorFlow's
Conv2D, Conv2DBackpropInput and Conv2DBackpropFilter for `native`; the gradient tape of the
per-group convolutions for `split`), milliseconds as the minimum of --repeats calls:
bench/grouped_conv_torch.py times PyTorch's grouped convolution the same way, for the comparison.

Each row also gives the largest difference of each kernel's loss, input gradient and kernel gradient from
Keras's, relative to the largest magnitude of the same tensor (float32 reordering: ~1e-6).
The first line is the machine key and `uptime`'s load: on a shared machine say it with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archbuilder.keras.graph import build_model  # noqa: E402  (sets TensorFlow's environment first)
from archbuilder.plan.validate import load_checked_spec  # noqa: E402
from archbuilder.training.grouped_choice import interleaved_timings, kernel_steps, shape_key  # noqa: E402
from archbuilder.training.grouped_conv import is_depthwise, switchable  # noqa: E402
from archbuilder.training.kernel_choice import machine_key  # noqa: E402

import numpy as np  # noqa: E402


def measure(layer, batch: int, kernels: list[str], repeats: int) -> dict:
    kernels = [k for k in kernels if k != "depthwise" or is_depthwise(layer)]
    steps = kernel_steps(layer, batch, kernels)
    row = {"ms": interleaved_timings(steps, repeats),
           "first_call_s": {k: round(steps[k][2], 2) if k in steps else "failed" for k in kernels}}
    if "keras" in steps:
        reference = steps["keras"][1]
        # (loss, input gradient, kernel gradient) of each kernel against Keras's
        row["max_relative_difference"] = {
            k: [float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(results, reference)]
            for k, (_, results, _) in steps.items() if k != "keras"}
    return row


def measure_parts(layer, batch: int, repeats: int) -> dict:
    """Milliseconds (minimum of `repeats`) of each part of `native` and `split` on one layer's shape."""
    import time

    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, *layer.input.shape[1:])).astype("float32"))
    w = tf.constant(0.05 * rng.standard_normal(tuple(layer.kernel.shape)).astype("float32"))
    strides, padding, groups = [1, *layer.strides, 1], layer.padding.upper(), layer.groups
    dy = tf.constant(rng.standard_normal(tf.nn.conv2d(x, w, strides, padding).shape).astype("float32"))

    def split(x, w):
        return tf.concat([tf.nn.conv2d(a, b, strides, padding)
                          for a, b in zip(tf.split(x, groups, -1), tf.split(w, groups, -1))], -1)

    def split_gradient(of):
        with tf.GradientTape() as tape:
            tape.watch(of)
            y = split(x, w)
        return tape.gradient(y, of, output_gradients=dy)

    parts = {
        "native_forward": lambda: tf.nn.conv2d(x, w, strides, padding),
        "native_input_gradient": lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides, padding=padding),
        "native_kernel_gradient": lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides, padding=padding),
        "split_forward": lambda: split(x, w),
        "split_input_gradient": lambda: split_gradient(x),
        "split_kernel_gradient": lambda: split_gradient(w),
    }
    functions, times = {name: tf.function(call) for name, call in parts.items()}, {name: [] for name in parts}
    for function in functions.values():
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function().numpy()
            times[name].append(time.perf_counter() - start)
    return {"ms": {name: round(1000 * min(t), 1) for name, t in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", default="convnext_tiny,resnext50_32x4d")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels", default="keras,depthwise,depthwise_sum,split,native")
    parser.add_argument("--parts", action="store_true", help="time native and split part by part (groups < channels)")
    args = parser.parse_args()
    print(json.dumps({"machine": machine_key(), "load": os.getloadavg()}), flush=True)
    for spec in args.specs.split(","):
        checked = load_checked_spec(ROOT / "architectures" / "imagenet" / f"{spec}.yaml",
                                    [f"input.shape=[{args.size}, {args.size}, 3]", "classes=10"])
        network = build_model(checked.spec)
        rows: dict[str, dict] = {}
        for layer in network.layers:
            if not switchable(layer) or (args.parts and is_depthwise(layer)):
                continue
            key = shape_key(layer, args.batch)
            if key not in rows:
                timed = (measure_parts(layer, args.batch, args.repeats) if args.parts
                         else measure(layer, args.batch, args.kernels.split(","), args.repeats))
                rows[key] = {"spec": spec, "shape": key, "first_layer": layer.name, "layers": 0, **timed}
                print(json.dumps(rows[key]), flush=True)
            rows[key]["layers"] += 1
        print(json.dumps({"spec": spec, "layers_per_shape": {k: r["layers"] for k, r in rows.items()},
                          "load": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
