"""A gradient recorded on the tape directly (archbuilder/training/tape_gradient.py): the tape uses
it instead of the forward ops' own, in eager code and in a traced step, and records nothing
without a tape. TensorFlow's internal record module is pinned with TensorFlow; this fails if it
stops behaving so."""

from __future__ import annotations

import numpy as np

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import tensorflow as tf  # noqa: E402

from archbuilder.training.tape_gradient import record_gradient, untaped  # noqa: E402


def _tripled(x, scale):
    """x * scale forward, with a deliberately different recorded gradient (3 * upstream for x,
    none for scale), so that the test sees which gradient the tape used."""
    with untaped():
        y = x * scale
    record_gradient("Tripled", [y], [x, scale], lambda upstream: (3.0 * upstream, None))
    return y


def test_the_tape_uses_the_recorded_gradient_not_the_forward_ops():
    x, scale = tf.constant([1.0, -2.0]), tf.constant(5.0)

    def run(x, scale):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, scale])
            y = _tripled(x, scale)
            z = tf.reduce_sum(y * y)  # recorded as usual, through y
        return y, tape.gradient(z, x), tape.gradient(z, scale)

    for runner in (run, tf.function(run)):
        y, dx, dscale = runner(x, scale)
        np.testing.assert_array_equal(y.numpy(), [5.0, -10.0])  # the forward ops ran
        np.testing.assert_array_equal(dx.numpy(), 3.0 * 2.0 * y.numpy())  # dz/dy = 2y, then 3x
        assert dscale is None  # the multiply itself was never on the tape


def test_variables_read_before_reach_their_gradient_and_no_tape_records_nothing():
    weight = tf.Variable([2.0, 4.0])
    with tf.GradientTape() as tape:
        y = _tripled(tf.convert_to_tensor(weight), tf.constant(1.0))
    np.testing.assert_array_equal(tape.gradient(y, weight).numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(_tripled(tf.constant([1.0]), tf.constant(2.0)).numpy(), [2.0])
