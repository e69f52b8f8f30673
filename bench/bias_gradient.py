"""A convolution's bias gradient in training: TensorFlow's BiasAddGrad against a separate sum.

    .venv/bin/python bench/bias_gradient.py [--networks resnet18,resnet34] [--batch 32] [--steps 10]
        [--precision float32] [--no-shapes]

With oneDNN on (archbuilder/runtime.py turns it on), TensorFlow's layout pass fuses a BiasAddGrad
with the Conv2DBackpropFilter that reads the same upstream gradient into one
`_MklNativeConv2DBackpropFilterWithBias`. Two measurements of whether that helps:

  shapes   per convolution shape of the ResNets at --batch: kernel gradient + BiasAddGrad (fused
           by the layout pass) against the kernel gradient alone and against the kernel gradient +
           a reduce_sum over batch, height and width (what archbuilder/training/fused_conv_bias.py
           records in float32), median milliseconds
  steps    whole training steps of each zoo network (architectures/imagenet/NAME.yaml, 10 classes,
           the switches `train` makes; bench/fused_kernels.py `make`, grouped convolutions
           on `native`) in two models with the same
           weights: one whose biased Conv2D layers take BiasAdd's registered gradient
           (BiasAddGrad), one whose layers record the sum; alternating on one random batch, first
           two steps dropped; median step each and the median per-round ratio

bench/RESULTS.md has the figures; the CPU and `uptime`'s load are printed first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fused_kernels import grouped_on_native, make  # noqa: E402  (sets TensorFlow's environment first)

# (input size, in channels, out channels, kernel, stride): ResNet-18/34's 7x7 stem and 3x3 layers.
SHAPES = [(224, 3, 64, 7, 2), (56, 64, 64, 3, 1), (56, 64, 128, 3, 2), (28, 128, 128, 3, 1),
          (14, 256, 256, 3, 1), (7, 512, 512, 3, 1)]


def _median_ms(function, *args, repeats=9) -> float:
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for tensor in function(*args):
            tensor.numpy()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 1)


def shapes(batch: int) -> None:
    import tensorflow as tf

    print("| shape (batch %d) | kernel gradient + BiasAddGrad (fused) | kernel gradient alone | kernel gradient + sum |" % batch)
    print("|---|---|---|---|")
    for size, channels, filters, kernel, stride in SHAPES:
        x = tf.random.normal([batch, size, size, channels])
        upstream = tf.random.normal([batch, size // stride, size // stride, filters])

        def kernel_gradient(x, upstream):
            return tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=[kernel, kernel, channels, filters], out_backprop=upstream,
                strides=[1, stride, stride, 1], padding="SAME")

        fused = tf.function(lambda x, dy: (kernel_gradient(x, dy), tf.raw_ops.BiasAddGrad(out_backprop=dy)))
        alone = tf.function(lambda x, dy: (kernel_gradient(x, dy),))
        summed = tf.function(lambda x, dy: (kernel_gradient(x, dy), tf.reduce_sum(dy, axis=[0, 1, 2])))
        times = [_median_ms(f, x, upstream) for f in (fused, alone, summed)]
        print(f"| {size}x{size}x{channels} -> {filters}, {kernel}x{kernel}/{stride} | "
              + " | ".join(f"{t} ms" for t in times) + " |", flush=True)


def _biasaddgrad_call(layer):
    """The switched call with BiasAdd's registered gradient (BiasAddGrad)."""
    import keras
    import tensorflow as tf

    def call(inputs):
        outputs = tf.nn.bias_add(layer.convolution_op(inputs, layer.kernel), keras.ops.convert_to_tensor(layer.bias))
        return outputs if layer.activation is None else layer.activation(outputs)
    return call


def _sum_call(layer):
    """The switched call with the bias gradient recorded as a sum, in any dtype."""
    import keras
    import tensorflow as tf

    from archbuilder.training.tape_gradient import record_gradient, untaped

    def call(inputs):
        convolved = layer.convolution_op(inputs, layer.kernel)
        bias = tf.convert_to_tensor(keras.ops.convert_to_tensor(layer.bias))
        with untaped():
            outputs = tf.nn.bias_add(convolved, bias)
        record_gradient("BiasAdd", [outputs], [convolved, bias],
                        lambda upstream: [upstream, tf.reduce_sum(upstream, axis=[0, 1, 2])])
        return outputs if layer.activation is None else layer.activation(outputs)
    return call


def steps(network: str, batch: int, count: int, precision: str) -> None:
    import keras
    import numpy as np

    from archbuilder.training.precision import precision_policy

    with precision_policy(precision):
        models = {"BiasAddGrad": make(network, []), "sum": make(network, [])}
        for name, model in models.items():
            grouped_on_native(model)  # not Keras's XLA path (ResNeXt's grouped convolutions)
            for layer in model._flatten_layers(include_self=False):
                if "call" in vars(layer) and type(layer) is keras.layers.Conv2D and layer.use_bias:
                    layer.call = (_biasaddgrad_call if name == "BiasAddGrad" else _sum_call)(layer)
        x = np.random.RandomState(0).uniform(0, 255, (batch, *models["sum"].input_shape[1:])).astype("float32")
        y = keras.utils.to_categorical(np.arange(batch) % 10, 10)
        times = {name: [] for name in models}
        for step in range(count):
            for name, model in (models.items() if step % 2 == 0 else reversed(models.items())):
                start = time.perf_counter()
                model.train_on_batch(x, y)
                times[name].append(time.perf_counter() - start)
    medians = {name: round(statistics.median(t[2:]), 3) for name, t in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times["BiasAddGrad"][2:], times["sum"][2:]))
    print(f"| {network} | {precision} | {batch} | {medians['BiasAddGrad']} s | {medians['sum']} s | {ratio:.3f} |",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="resnet18,resnet34,resnet50,resnet101")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--no-shapes", action="store_true", help="only the whole steps")
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps: at least 3 (the first two are dropped)")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU {cpu}, avx512f: {'avx512f' in open('/proc/cpuinfo').read()}, load {os.getloadavg()}")
    if not args.no_shapes:
        shapes(args.batch)
    print("\n| network | precision | batch | step, BiasAddGrad | step, sum | BiasAddGrad / sum |")
    print("|---|---|---|---|---|---|")
    for network in args.networks.split(","):
        steps(network, args.batch, args.steps, args.precision)


if __name__ == "__main__":
    main()
