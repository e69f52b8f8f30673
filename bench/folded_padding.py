"""Zero padding folded into the convolution after it where it is SAME's (training/fused_padding.py),
against the padding layer and a VALID convolution: per layer and in whole training steps.

    .venv/bin/python bench/folded_padding.py [--networks seresnet50,wide_resnet50_2,resnet50d]
        [--batch 32] [--steps 10] [--no-shapes]

  shapes   forward + input and kernel gradients of the zoo's padded stride-1 3x3 shapes at
           --batch: tf.pad then a VALID convolution against one SAME convolution, alternating
           call by call, median milliseconds
  steps    whole training steps of zoo networks (architectures/imagenet/NAME.yaml, 10 classes, the
           switches `train` makes: bench/fused_kernels.py `make`, grouped convolutions on
           `native`, the timed switches as the user's cache decides them or timed now) in two
           models with the same weights, one with its paddings folded as `train` folds them
           (after the timed switches); alternating on one random batch, first two steps dropped;
           median steps and the median per-round ratio

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
    make, parse_step_arguments, step_medians, switch_timed_kernels,
)
from archbuilder.training.fused_padding import use_folded_padding  # noqa: E402

# (map size, channels in and out): the padded stride-1 3x3 convolutions of the zoo's
# bottleneck_v15 files (SE-ResNet-50, ResNet-50D; Wide ResNet-50-2's are twice as wide).
SHAPES = [(56, 64), (56, 128), (28, 128), (14, 256), (7, 512)]
PAD = [[0, 0], [1, 1], [1, 1], [0, 0]]


def shapes(batch: int, repeats: int = 9) -> None:
    import tensorflow as tf

    functions = {"padded": convolution_training_step(lambda x, k: tf.nn.conv2d(tf.pad(x, PAD), k, 1, "VALID")),
                 "folded": convolution_training_step(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))}
    print("| shape | batch | padding layer + VALID, ms | SAME, ms | SAME / padded |")
    print("|---|---|---|---|---|")
    for size, channels in SHAPES:
        x = tf.random.normal([batch, size, size, channels])
        kernel = tf.random.normal([3, 3, channels, channels]) * (2 / (9 * channels)) ** 0.5
        upstream = tf.random.normal([batch, size, size, channels])
        for function in functions.values():
            function(x, kernel, upstream)  # traced, warm
        ms = alternating_calls(functions, (x, kernel, upstream), repeats)
        print(f"| {size}x{size}x{channels} -> {channels} | {batch} | {ms['padded']:.1f} | {ms['folded']:.1f} | "
              f"{ms['folded'] / ms['padded']:.3f} |", flush=True)


def steps(network: str, batch: int, count: int) -> str:
    models, folded = {}, 0
    for variant in ("padded", "folded"):
        model = make(network, [])
        grouped_on_native(model)
        switch_timed_kernels(model, batch)  # before the fold, as loop.py
        if variant == "folded":
            folded = len(use_folded_padding(model))
            model.set_weights(models["padded"].get_weights())
        models[variant] = model
    medians, ratios = step_medians(alternating_steps(models, batch, count), "padded")
    return (f"| {network} | {batch} | {folded} | {medians['padded']} s | {medians['folded']} s | "
            f"{ratios['folded']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, "seresnet50,wide_resnet50_2,resnet50d")
    parser.add_argument("--no-shapes", action="store_true")
    args = parse_step_arguments(parser)
    print(cpu_line(), flush=True)
    if not args.no_shapes:
        shapes(args.batch)
    rows = [steps(network, args.batch, args.steps) for network in filter(None, args.networks.split(","))]
    print("\n| network | batch | convolutions folded | step: padded | folded | padded / folded |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
