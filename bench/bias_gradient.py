"""A convolution's bias gradient in training: TensorFlow's BiasAddGrad, fused or not, against a sum.

    .venv/bin/python bench/bias_gradient.py [--networks resnet18,resnet34] [--batch 32] [--steps 10]
        [--precision float32] [--no-shapes]

With oneDNN on (archbuilder/runtime.py turns it on), TensorFlow's layout pass fuses a BiasAddGrad
with the Conv2DBackpropFilter that reads the same upstream gradient into one
`_MklNativeConv2DBackpropFilterWithBias`. Three ways to compute the bias gradient:

  fused    BiasAdd's registered gradient: a BiasAddGrad of the upstream gradient, which the
           layout pass fuses with the kernel gradient
  sum      a reduce_sum of the upstream gradient over batch, height and width
  matrix   a BiasAddGrad of the upstream gradient reshaped to [positions, channels]: a tensor the
           kernel gradient does not read, so not fused (what archbuilder/training/
           fused_conv_bias.py records in float32)

measured two ways:

  shapes   per convolution shape of the ResNets at --batch: the kernel gradient alone, and with
           each of the three, in one function; median milliseconds
  steps    whole training steps of each zoo network (architectures/imagenet/NAME.yaml, 10 classes,
           the switches `train` makes; bench/fused_kernels.py `make`, grouped convolutions on
           `native`) in three models with the same weights whose biased Conv2D layers take each
           way; alternating on one random batch, first two steps dropped; median step each and
           the median per-round ratios to `fused`

bench/RESULTS.md has the figures; the CPU and `uptime`'s load are printed first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fused_kernels import (  # noqa: E402  (sets TensorFlow's environment first)
    add_step_arguments, alternating_steps, cpu_line, grouped_on_native, make, parse_step_arguments, step_medians,
)
from archbuilder.training.fused_conv_bias import bias_gradient  # noqa: E402

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


def _sum(upstream):
    import tensorflow as tf

    return tf.reduce_sum(upstream, axis=[0, 1, 2])


WAYS = {"sum": _sum, "matrix": bias_gradient}  # matrix: what fused_conv_bias.py records in float32


def shapes(batch: int) -> None:
    import tensorflow as tf

    print(f"| shape (batch {batch}) | kernel gradient alone | + BiasAddGrad (fused) | + sum | + BiasAddGrad of the matrix |")
    print("|---|---|---|---|---|")
    for size, channels, filters, kernel, stride in SHAPES:
        x = tf.random.normal([batch, size, size, channels])
        upstream = tf.random.normal([batch, size // stride, size // stride, filters])

        def kernel_gradient(x, upstream):
            return tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=[kernel, kernel, channels, filters], out_backprop=upstream,
                strides=[1, stride, stride, 1], padding="SAME")

        functions = [tf.function(lambda x, dy: (kernel_gradient(x, dy),)),
                     tf.function(lambda x, dy: (kernel_gradient(x, dy), tf.raw_ops.BiasAddGrad(out_backprop=dy)))]
        functions += [tf.function(lambda x, dy, way=way: (kernel_gradient(x, dy), way(dy))) for way in WAYS.values()]
        times = [_median_ms(f, x, upstream) for f in functions]
        print(f"| {size}x{size}x{channels} -> {filters}, {kernel}x{kernel}/{stride} | "
              + " | ".join(f"{t} ms" for t in times) + " |", flush=True)


def _call(layer, way):
    """The switched call with the bias gradient computed `way` (None: BiasAdd's registered
    gradient, fused by the layout pass)."""
    import keras
    import tensorflow as tf

    from archbuilder.training.tape_gradient import record_gradient, untaped

    def call(inputs):
        convolved = layer.convolution_op(inputs, layer.kernel)
        bias = tf.convert_to_tensor(keras.ops.convert_to_tensor(layer.bias))
        if way is None:
            outputs = tf.nn.bias_add(convolved, bias)
        else:
            with untaped():
                outputs = tf.nn.bias_add(convolved, bias)
            record_gradient("BiasAdd", [outputs], [convolved, bias], lambda upstream: [upstream, way(upstream)])
        return outputs if layer.activation is None else layer.activation(outputs)
    return call


def steps(network: str, batch: int, count: int, precision: str) -> None:
    import keras

    from archbuilder.training.precision import precision_policy

    ways = {"fused": None, **WAYS}
    with precision_policy(precision):
        models = {name: make(network, []) for name in ways}
        for name, model in models.items():
            grouped_on_native(model)  # not Keras's XLA path (ResNeXt's grouped convolutions)
            for layer in model._flatten_layers(include_self=False):
                if "call" in vars(layer) and type(layer) is keras.layers.Conv2D and layer.use_bias:
                    layer.call = _call(layer, ways[name])
        times = alternating_steps(models, batch, count)
    medians, ratios = step_medians(times, "fused")
    print(f"| {network} | {precision} | {batch} | {medians['fused']} s | {medians['sum']} s | {medians['matrix']} s | "
          f"{ratios['sum']:.3f} | {ratios['matrix']:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, "resnet18,resnet34,resnet50,resnet101")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--no-shapes", action="store_true", help="only the whole steps")
    args = parse_step_arguments(parser)
    print(cpu_line())
    if not args.no_shapes:
        shapes(args.batch)
    print("\n| network | precision | batch | step, fused | step, sum | step, matrix | fused / sum | fused / matrix |")
    print("|---|---|---|---|---|---|---|---|")
    for network in args.networks.split(","):
        steps(network, args.batch, args.steps, args.precision)


if __name__ == "__main__":
    main()
