"""3x3 convolutions in training: TensorFlow's (oneDNN's) against Winograd F(2x2, 3x3).

    .venv/bin/python bench/winograd.py [--networks resnet18,resnet34] [--batch 32] [--steps 10]
        [--shape-batches 8,16,32] [--no-shapes]

archbuilder/training/winograd_conv.py computes a stride-1 SAME 3x3 convolution by Winograd's
minimal filtering (2.25x fewer products, transforms at memory speed); `train` switches it on per
shape where it timed faster (winograd_choice.py). Measured two ways:

  shapes   forward + input and kernel gradients of each stride-1 3x3 shape of the zoo's ResNets
           (odd 7x7 maps padded to 8x8 as a proxy: winograd_conv.py takes even maps only), both
           kernels alternating call by call, median milliseconds, at each of --shape-batches
  steps    whole training steps of zoo networks (architectures/imagenet/NAME.yaml, 10 classes,
           the switches `train` makes on every CPU; bench/fused_kernels.py `make`, grouped
           convolutions on `native`) in two models with the same weights, one with every
           Winograd candidate (winograd_conv.py `candidate`) switched, whatever its timing:
           alternating on one random batch, first two steps dropped; median steps and the median
           per-pair ratio

bench/RESULTS.md has the figures; the CPU and `uptime`'s load are printed first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fused_kernels import (  # noqa: E402  (sets TensorFlow's environment first)
    add_step_arguments, alternating_calls, alternating_steps, convolution_training_step, cpu_line, grouped_on_native,
    make, parse_step_arguments, step_medians,
)
from archbuilder.training.winograd_choice import switch_winograd  # noqa: E402
from archbuilder.training.winograd_conv import candidate, winograd_convolution  # noqa: E402

# (map size, in channels, out channels): the zoo's stride-1 3x3 shapes (ResNet-18/34, the
# bottleneck ResNets, Wide ResNet-50); 8 stands for the odd 7.
SHAPES = [(56, 64, 64), (28, 128, 128), (28, 256, 256), (14, 256, 256), (14, 512, 512), (8, 512, 512)]


def shapes(batches: list[int], repeats: int = 9) -> None:
    import tensorflow as tf

    functions = {"tensorflow": convolution_training_step(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")),
                 "winograd": convolution_training_step(winograd_convolution)}
    print("| shape | batch | TensorFlow, ms | Winograd, ms | TensorFlow / Winograd | largest difference / largest value |")
    print("|---|---|---|---|---|---|")
    for size, channels, filters in SHAPES:
        for batch in batches:
            x = tf.random.normal([batch, size, size, channels])
            kernel = tf.random.normal([3, 3, channels, filters]) * (2 / (9 * channels)) ** 0.5
            upstream = tf.random.normal([batch, size, size, filters])
            results = {name: f(x, kernel, upstream) for name, f in functions.items()}  # traced, warm
            difference = max(float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(a)))
                             for a, b in zip(*results.values()))
            ms = alternating_calls(functions, (x, kernel, upstream), repeats)
            print(f"| {size}x{size}x{channels} -> {filters} | {batch} | {ms['tensorflow']:.1f} | {ms['winograd']:.1f} | "
                  f"{ms['tensorflow'] / ms['winograd']:.2f} | {difference:.1e} |", flush=True)


def steps(network: str, batch: int, count: int) -> None:
    models = {"tensorflow": make(network, []), "winograd": make(network, [])}
    models["winograd"].set_weights(models["tensorflow"].get_weights())
    for model in models.values():
        grouped_on_native(model)  # not Keras's XLA path (ResNeXt's grouped convolutions)
    switched = switch_winograd(models["winograd"], {layer.name for layer in models["winograd"].layers if candidate(layer)})
    times = alternating_steps(models, batch, count)
    medians, ratios = step_medians(times, "tensorflow")
    print(f"| {network} | {batch} | {len(switched)} | {medians['tensorflow']} s | {medians['winograd']} s | "
          f"{ratios['winograd']:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, "resnet18,resnet34,resnet50,wide_resnet50_2")
    parser.add_argument("--shape-batches", default="8,16,32")
    parser.add_argument("--no-shapes", action="store_true", help="only the whole steps")
    args = parse_step_arguments(parser)
    print(cpu_line())
    if not args.no_shapes:
        shapes([int(b) for b in args.shape_batches.split(",")])
    print("\n| network | batch | layers switched | step, TensorFlow | step, Winograd | TensorFlow / Winograd |")
    print("|---|---|---|---|---|---|")
    for network in filter(None, args.networks.split(",")):
        steps(network, args.batch, args.steps)


if __name__ == "__main__":
    main()
