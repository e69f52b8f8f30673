"""The training augmentation's cost per batch, by transform: Keras's kernel against data.axis_resample.

    .venv/bin/python bench/augment_speed.py [--repeats 9]

One batch of 32 random 224x224 images, one thread (as the training pipeline runs each op:
data/pipeline.py `_training_options`), the recipe's augmentation (bench/input_speed.py's
AUGMENTATION). For each of its layers, ms per batch of the layer's own `transform_images` (what
Keras runs) and, for zoom and translation, of `axis_aligned_transform` (what training runs); then
the whole augmentation as training runs it (data.augment.StatelessAugmentation) against every
layer through its own `transform_images`, both drawing their random numbers inside. Each a traced
function, called REPEATS times after one warm-up call; medians. Same pixels either way
(tests/test_axis_resample.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ms(function, *args, repeats: int) -> float:
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args).numpy()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from archbuilder.runtime import configure_tensorflow_environment

    configure_tensorflow_environment()  # as `train` runs (oneDNN's settings)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from archbuilder.data.augment import StatelessAugmentation, _matrix, example_draws
    from archbuilder.data.axis_resample import axis_aligned_transform, resamples_exactly
    from archbuilder.spec.training import AugmentationSpec
    from bench.input_speed import AUGMENTATION, BATCH, SIZE

    images = tf.random.stateless_uniform([BATCH, SIZE, SIZE, 3], seed=[0, 0], maxval=255.0)
    epochs, positions = tf.zeros([BATCH], tf.int64), tf.range(BATCH, dtype=tf.int64)
    augment = StatelessAugmentation(AugmentationSpec(**AUGMENTATION), 0)
    draws = example_draws(0, epochs, positions)
    for layer in augment.layers:
        transformation = augment._transformation(layer, images, draws)
        row = {"layer": type(layer).__name__, "keras_ms": _ms(tf.function(
            lambda x: layer.transform_images(x, transformation, training=True)), images, repeats=args.repeats)}
        if resamples_exactly(layer):
            matrix = _matrix(layer, transformation)
            row["two_pass_ms"] = _ms(tf.function(lambda x: axis_aligned_transform(x, matrix)), images,
                                     repeats=args.repeats)
        print(json.dumps(row), flush=True)

    def keras_only(x):  # the same draws, made inside as training makes them
        drawn = example_draws(0, epochs, positions)
        for layer in augment.layers:
            x = layer.transform_images(x, augment._transformation(layer, x, drawn), training=True)
        return x

    print(json.dumps({"whole augmentation": {
        "keras_ms": _ms(tf.function(keras_only), images, repeats=args.repeats),
        "training_ms": _ms(tf.function(lambda x: augment(x, epochs, positions)), images, repeats=args.repeats)}}))


if __name__ == "__main__":
    main()
