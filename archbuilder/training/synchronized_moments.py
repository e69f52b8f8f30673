"""Synchronized batch norm's statistics as one device computes them: two passes, not one.

Keras's synchronized batch norm (keras/src/backend/tensorflow/nn.py `_compute_moments_sync`)
all-reduces sum(x) and sum(x^2) and takes var = E[x^2] - E[x]^2. In floating point that
difference cancels: the variance keeps a relative precision of only u * (1 + mean^2 / var)
(u = 2^-24 in float32). A layer right after the first convolution sees photos scaled to [0, 1],
all positive, so a channel's mean can be many times its spread: at mean / spread 843 Keras's
variance came out 7.8% off, at 10,183 all of it was lost (tests/helpers/replica_moments.py).
Keras takes that form under *any* replica context, TensorFlow's default one included, so a
synchronized layer trained on one device computed it too.

Here each replica takes its own slice's count n_i, mean m_i and sum of squared deviations M2_i in
two passes (tf.nn.moments's form), the replicas exchange the three per channel in one all-reduce
(each writes its own row of an [R, 3, C] tensor of zeros, and a sum with zeros is exact in any
order), and every replica combines the rows by Chan, Golub and LeVeque's pairwise formula
("Algorithms for computing the sample variance", 1983), as PyTorch's SyncBatchNorm combines its
processes' statistics (torch/nn/modules/_functions.py, `batch_norm_gather_stats_with_counts`):

    N = sum n_i,   mean = sum n_i m_i / N,   var = (sum M2_i + sum n_i (m_i - mean)^2) / N

No difference of two large sums is taken: each term is a sum of squares, so the variance is
as exact as one device's two-pass one, whatever mean^2 / var is. Gradients flow through the
all-reduce (TensorFlow all-reduces the upstream gradient) and through every m_i; in exact
arithmetic d var / d x = 2 (x - mean) / N for every image on every replica, as on one device.
With one replica (one device) it is tf.nn.moments itself: what an unsynchronized layer computes.

Made on the layer *instances* (their own `_moments`, which Keras's `call` asks for the batch
statistics), never on the class: model files stay those of stock layers.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import switch_instances


def use_exact_synchronized_moments(model) -> list[str]:
    """Give every stock synchronized batch norm of `model` the two-pass statistics above (with a GPU
    too: it is precision, not speed); their names."""
    return switch_instances(
        model, lambda layer: type(layer) is keras.layers.BatchNormalization and layer.synchronized,
        lambda layer: _exact_moments(layer, layer._moments), cpu_only=False, attribute="_moments")


def _exact_moments(layer, keras_moments):
    def moments(inputs, mask):
        if mask is not None:  # Keras's masked statistics are per replica; left as they are
            return keras_moments(inputs, mask)
        return replica_moments(inputs, layer._reduction_axes)

    return moments


def replica_moments(x, axes):
    """(mean, biased variance) of `x` over `axes` and over every replica in sync, as one device
    would compute them over the whole batch (see the module's docstring)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.nn.moments(x, axes)
    replicas = context.num_replicas_in_sync
    shape = tf.shape(x)
    count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype)  # 0 for an empty slice
    kept = tf.math.divide_no_nan(tf.reduce_sum(x, axes, keepdims=True), count)  # broadcasts on any axis
    # The deviations from this replica's own mean: the second pass. stop_gradient as tf.nn.moments
    # has it (sum(x - m_i) is zero); m_i's gradient comes through the pairwise term below.
    squares = tf.reduce_sum(tf.math.squared_difference(x, tf.stop_gradient(kept)), axes)
    local_mean = tf.squeeze(kept, axes)  # [C]
    rows = tf.stack([tf.fill(tf.shape(local_mean), count), local_mean, squares])  # [3, C]
    slot = tf.one_hot(context.replica_id_in_sync_group, replicas, dtype=x.dtype)  # [R]
    table = context.all_reduce(tf.distribute.ReduceOp.SUM, slot[:, None, None] * rows[None])  # [R, 3, C]
    counts, means, squares = table[:, 0], table[:, 1], table[:, 2]
    total = tf.reduce_sum(counts, 0)
    mean = tf.math.divide_no_nan(tf.reduce_sum(counts * means, 0), total)
    spread = tf.reduce_sum(counts * tf.math.squared_difference(means, mean), 0)
    variance = tf.math.divide_no_nan(tf.reduce_sum(squares, 0) + spread, total)
    return mean, variance
