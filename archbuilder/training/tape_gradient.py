"""A fused kernel's gradient put on the gradient tape directly: tf.custom_gradient without its copies.

The switched layers (fused_*.py) compute their forward pass as a few TensorFlow ops and give the
gradient themselves. `tf.custom_gradient` does that in a graph by passing the outputs *and every
input* through an IdentityN op, an Identity per output, and, when the tape differentiates the
IdentityN, a ZerosLike for each passed-through input: 3-5 ops a call that grappler removes again,
after Python has built them while tracing the first step (~0.9 ms an op on a first-generation
EPYC; bench/RESULTS.md). Ops with several outputs differentiated by their registered gradient pay
similarly: the tape makes zeros for every output that has no gradient (FusedBatchNormV3's five
others) unless TensorFlow lists the op as accepting None there, which it does for FusedBatchNorm
but not for V3.

Here the forward ops are built with the tape stopped, and one entry is recorded on it from the
inputs to the outputs that have a gradient, with the backward function as the gradient: what
tf.custom_gradient records, without the copies. Tapes only: TensorFlow's symbolic
`tf.gradients` (graph mode without a tape) differentiates the forward ops by their own registered
gradients, which is the same math. Keras's training step, `fit` and every test here use tapes.

`tensorflow.python.eager.record` is TensorFlow's internal module behind tf.custom_gradient and
tf.GradientTape (pinned, TensorFlow 2.21.0); tests/test_tape_gradient.py checks it still behaves.
"""

from __future__ import annotations

from tensorflow.python.eager import record


def untaped():
    """A context in which the ops built are not recorded on any gradient tape."""
    return record.stop_recording()


def record_gradient(name: str, outputs: list, inputs: list, backward) -> None:
    """Record on every active tape that `outputs` were computed from `inputs`, with gradient
    `backward(*output_gradients) -> [gradient of each input]` (None where there is none).
    Nothing is recorded where no tape is active (inference)."""
    record.record_operation(name, list(outputs), list(inputs), backward)
