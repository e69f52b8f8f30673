"""Batch statistics over 2 replicas (logical CPUs), ours and Keras's, against float64 numpy; one
JSON line. Run in a fresh process: logical devices can only be set before TensorFlow runs.

    python tests/helpers/replica_moments.py

The batch: 16 images of 4x4 and 4 channels, 8 per replica; channel c has mean MEANS[c] and a spread
of about SPREADS[c], so mean^2 / var runs from 1 (well conditioned) to ~1e8. Reported: each form's
relative error of each channel's variance (ours also through a layer as `train` switches it), ours' means' largest error relative to |mean| + std, and
ours' gradient of sum(var * w) against the exact 2 w (x - mean) / N, per channel relative to its
largest value.
"""

from __future__ import annotations

import json

import numpy as np

from archbuilder.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()

MEANS = np.array([0.0, 3.0, 40.0, 1000.0])
SPREADS = np.array([1.0, 0.1, 0.05, 0.1])


def main() -> None:
    import keras

    from archbuilder.training.distribute import start
    from archbuilder.training.fused_batch_norm import use_fused_batch_norm
    from archbuilder.training.synchronized_moments import replica_moments, use_exact_synchronized_moments

    strategy = start("mirrored", 2).strategy
    rng = np.random.default_rng(7)
    batch = (MEANS + SPREADS * rng.standard_normal((16, 4, 4, 4))).astype(np.float32)
    weights = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    halves = [tf.constant(batch[:8]), tf.constant(batch[8:])]
    axes = [0, 1, 2]

    def replica_step():
        context = tf.distribute.get_replica_context()
        x = tf.gather(tf.stack(halves), context.replica_id_in_sync_group)
        with tf.GradientTape() as tape:
            tape.watch(x)
            mean, variance = replica_moments(x, axes)
            # Each replica holds 1/R of the objective, as Keras scales a replica's loss under a
            # strategy: the all-reduce's gradient sums the replicas' upstream gradients.
            objective = tf.reduce_sum(variance * weights) / context.num_replicas_in_sync
        keras_mean, keras_variance = keras.ops.moments(x, axes, synchronized=True)
        return mean, variance, tape.gradient(objective, x), keras_mean, keras_variance

    per_replica = tf.function(lambda: strategy.run(replica_step))()

    # A synchronized layer as `train` switches it (fused batch norm and the two-pass statistics):
    # under 2 replicas it must keep Keras's call with the statistics above, not run the fused
    # op on its replica's half (nor be counted as fused). Momentum 0: its moving variance becomes
    # the batch variance.
    with strategy.scope():
        inputs = keras.Input((4, 4, 4))
        model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.0, synchronized=True, name="bn")(inputs))
    switched = [use_fused_batch_norm(model), use_exact_synchronized_moments(model)]
    layer = model.get_layer("bn")

    def layer_step():
        context = tf.distribute.get_replica_context()
        return layer(tf.gather(tf.stack(halves), context.replica_id_in_sync_group), training=True)

    tf.function(lambda: strategy.run(layer_step))()
    layer_variances = [np.asarray(v) for v in strategy.experimental_local_results(layer.moving_variance.value)]

    # Other layouts: channels first (axis 1) and a 2-D input (a batch norm after a Dense layer).
    layouts = []
    for shape, axis in (((16, 3, 4, 4), 1), ((16, 5), -1)):
        values = (50.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        with strategy.scope():
            inputs = keras.Input(shape[1:])
            other = keras.Model(inputs, keras.layers.BatchNormalization(axis=axis, momentum=0.0, synchronized=True)(inputs))
        use_exact_synchronized_moments(other)
        norm = other.layers[-1]
        parts = [tf.constant(values[:8]), tf.constant(values[8:])]
        tf.function(lambda: strategy.run(
            lambda: norm(tf.gather(tf.stack(parts), tf.distribute.get_replica_context().replica_id_in_sync_group),
                         training=True)))()
        reduced = tuple(i for i in range(len(shape)) if i != axis % len(shape))
        exact_values = values.astype(np.float64)
        truth = exact_values.var(axis=reduced)
        copies = [np.asarray(v) for v in strategy.experimental_local_results(norm.moving_variance.value)]
        layouts.append({"shape": list(shape), "axis": axis, "per_replica": int(np.prod(shape) // shape[axis] // 2),
                        "mean_over_spread": float(np.max(np.abs(exact_values.mean(axis=reduced)) / np.sqrt(truth))),
                        "variance_error": float(max(np.max(np.abs(c - truth) / truth) for c in copies))})
    local = [[np.asarray(t) for t in strategy.experimental_local_results(value)] for value in per_replica]
    mean, variance, gradient, keras_mean, keras_variance = local

    exact = batch.astype(np.float64)
    true_mean = exact.mean(axis=(0, 1, 2))
    true_variance = exact.var(axis=(0, 1, 2))
    true_gradient = 2 * weights * (exact - true_mean) / (16 * 4 * 4)

    def relative(values, truth):  # per channel, the worse of the two replicas
        return np.max([np.abs(v - truth) / np.abs(truth) for v in values], axis=0).tolist()

    print(json.dumps({
        "conditioning": (true_mean**2 / true_variance).tolist(),
        "replicas_agree": all(np.array_equal(a[0], a[1]) for a in (mean, variance)),
        "variance_error": relative(variance, true_variance),
        "keras_variance_error": relative(keras_variance, true_variance),
        "layer_switched": switched,
        "layer_variance_error": relative(layer_variances, true_variance),
        "layouts": layouts,
        # relative to |mean| + std: the first channel's mean is ~0
        "mean_error": float(max(np.max(np.abs(m - true_mean) / (np.abs(true_mean) + np.sqrt(true_variance)))
                                for m in mean)),
        # per channel, relative to the channel's largest gradient
        "gradient_error": (np.max(np.abs(np.concatenate(gradient) - true_gradient), axis=(0, 1, 2))
                           / np.max(np.abs(true_gradient), axis=(0, 1, 2))).tolist(),
    }))


if __name__ == "__main__":
    main()
