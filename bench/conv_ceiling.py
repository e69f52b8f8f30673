"""How close a network's 3x3 convolutions already run to this CPU's float32 peak, pass by pass.

    .venv/bin/python bench/conv_ceiling.py [--batch 32] [--repeats 7]

For each 3x3 stride-1 shape of ResNet-18/34 at 224x224 (56x56x64 to 7x7x512, as many filters as
channels), the three passes a training step runs, each alone: the forward convolution, the input
gradient (Conv2DBackpropInput) and the kernel gradient (Conv2DBackpropFilter), TensorFlow's own
ops (oneDNN's kernels where oneDNN is on), in GFLOP/s (2 x N x H x W x C x F x 9 a pass, the
fastest of --repeats calls). Beside them, the two rewrites of the kernel gradient as matrix
products (nine shifted products, and patches times the output gradient; kernel_choice.py's
candidate is the second) and the peak: TensorFlow's float32 matrix product of two 4096x4096
matrices, the same oneDNN GEMM the convolutions are built on.

A pass at the peak cannot be made faster without doing less arithmetic; where a network's step is
its convolutions and they run near the peak in both frameworks (ResNet-18/34 on the Zen 5 of
bench/RESULTS.md), no switch of ours can lead PyTorch by much.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archbuilder.runtime import configure_tensorflow_environment  # noqa: E402
from bench.zoo_speed import machine  # noqa: E402

configure_tensorflow_environment()

import tensorflow as tf  # noqa: E402

SHAPES = [(56, 64), (28, 128), (14, 256), (7, 512)]  # (height = width, channels = filters)


def fastest(function, *args, repeats: int) -> float:
    function(*args)  # traces and warms up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        for tensor in tf.nest.flatten(result):
            tensor.numpy()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_gflops(repeats: int) -> float:
    n = 4096
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    return 2 * n ** 3 / fastest(tf.function(tf.matmul), a, b, repeats=repeats) / 1e9


def passes(batch: int, size: int, channels: int):
    """The five ways of one shape, each a tf.function, and their arguments."""
    c = f = channels
    strides = [1, 1, 1, 1]

    def shifted(x, dy):
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        rows = tf.reshape(dy, [-1, f])
        return tf.reshape(tf.stack([
            tf.matmul(tf.reshape(padded[:, i:i + size, j:j + size, :], [-1, c]), rows, transpose_a=True)
            for i in range(3) for j in range(3)]), [3, 3, c, f])

    def patches(x, dy):
        p = tf.image.extract_patches(x, [1, 3, 3, 1], strides, [1, 1, 1, 1], "SAME")
        return tf.reshape(tf.matmul(tf.reshape(p, [-1, 9 * c]), tf.reshape(dy, [-1, f]), transpose_a=True),
                          [3, 3, c, f])

    x = tf.random.normal([batch, size, size, c])
    w = tf.random.normal([3, 3, c, f])
    dy = tf.random.normal([batch, size, size, f])
    return {
        "forward": (tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME")), (x, w)),
        "input gradient": (tf.function(lambda w, dy: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=[batch, size, size, c], filter=w, out_backprop=dy, strides=strides, padding="SAME")), (w, dy)),
        "kernel gradient": (tf.function(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=[3, 3, c, f], out_backprop=dy, strides=strides, padding="SAME")), (x, dy)),
        "kernel gradient, 9 shifted products": (tf.function(shifted), (x, dy)),
        "kernel gradient, patches x gradient": (tf.function(patches), (x, dy)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{machine()}; TensorFlow {tf.__version__}")
    peak = peak_gflops(args.repeats)
    print(f"peak: float32 4096x4096 matrix product {peak:.0f} GFLOP/s")
    for size, channels in SHAPES:
        flops = 2 * args.batch * size * size * channels * channels * 9
        cells = []
        for name, (function, arguments) in passes(args.batch, size, channels).items():
            gflops = flops / fastest(function, *arguments, repeats=args.repeats) / 1e9
            cells.append(f"{name} {gflops:.0f} ({gflops / peak:.0%})")
        print(f"{size}x{size}x{channels}, 3x3, {channels} filters, batch {args.batch}: " + "; ".join(cells), flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
