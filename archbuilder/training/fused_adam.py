"""Adam's update as TensorFlow's one fused op per weight: the same math, a much smaller graph.

Keras 3's Adam writes each weight's update as ~16 small ops (casts, powers, two moment updates,
a square root, the step), so the documented ResNet-50's 214 weights add ~3,400 ops to the
training graph. Python builds each of them while tracing the first step, and grappler then
optimizes them all: together ~40% of the tracing time (bench/first_step.py, bench/RESULTS.md).
`ResourceApplyAdam` is one op per weight that computes exactly Keras's formula:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2);  w -= m * alpha / (sqrt(v) + epsilon)

(keras/src/optimizers/adam.py `update_step`; tensorflow/core/kernels/training_ops.cc `ApplyAdam`).
The one difference is float rounding of a constant: Keras rounds 1 - beta_2 = 0.001 to float32,
the kernel computes 1 - float32(0.999), 1.3e-5 larger relatively, so each step is ~6e-6 larger
relatively (tests/test_fused_adam.py) -- far below the step-to-step noise of training.

Like cpu_kernels.py, the switch is made on the optimizer *instance* (its own `update_step`), never
on its class: the compiled model's config and its saved files are those of a plain Adam, and a
model loaded from a checkpoint is switched again before training resumes.
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf


# AdamW is Adam's `update_step` plus a decoupled weight decay that Keras's base optimizer applies to
# the weights before the update step (base_optimizer.apply -> _apply_weight_decay), so fusing its
# update step leaves the decay Keras's own.
FUSABLE = (keras.optimizers.Adam, keras.optimizers.AdamW)


def use_fused_adam(optimizer) -> bool:
    """Switch a plain `keras.optimizers.Adam` or `AdamW` (TensorFlow backend, no AMSGrad) to the
    fused op; False, and nothing changed, for any other optimizer."""
    if type(optimizer) not in FUSABLE or optimizer.amsgrad:
        return False
    if not all(isinstance(b, float) for b in (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon)):
        return False  # callables or tensors: Keras's own path handles those
    optimizer.update_step = _fused_update_step(optimizer)
    return True


def _fused_update_step(optimizer):
    # The step's scalars (the bias corrections' powers, the learning rate, the constants) are the
    # same for every weight, so in a traced graph they are built once and shared by all the
    # weights' updates (per graph, dtype, learning-rate tensor and device): ~15 ops per weight
    # fewer for Python to trace and grappler to optimize (bench/first_step.py). Eagerly each call
    # computes them afresh, as the step counter changes between calls.
    shared = weakref.WeakKeyDictionary()  # graph -> {(dtype, device): (learning_rate, scalars)}

    def scalars(variable, learning_rate):
        dtype = variable.dtype
        step = tf.cast(optimizer.iterations + 1, dtype)
        return {
            "beta1_power": tf.pow(tf.constant(optimizer.beta_1, dtype), step),
            "beta2_power": tf.pow(tf.constant(optimizer.beta_2, dtype), step),
            "lr": tf.cast(learning_rate, dtype),
            "beta1": tf.constant(optimizer.beta_1, dtype),
            "beta2": tf.constant(optimizer.beta_2, dtype),
            "epsilon": tf.constant(optimizer.epsilon, dtype),
        }

    def shared_scalars(variable, learning_rate):
        if tf.executing_eagerly():
            return scalars(variable, learning_rate)
        by_key = shared.setdefault(tf.compat.v1.get_default_graph(), {})
        key = (variable.dtype, variable.device)
        if key not in by_key or by_key[key][0] is not learning_rate:
            by_key[key] = (learning_rate, scalars(variable, learning_rate))
        return by_key[key][1]

    def update_step(gradient, variable, learning_rate):
        # `variable` is the tf.Variable under the Keras variable (the TensorFlow backend's
        # _backend_update_step unwraps it); the moments are Keras variables with a handle.
        index = optimizer._get_variable_index(variable)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=optimizer._momentums[index].handle,
            v=optimizer._velocities[index].handle,
            grad=tf.cast(gradient, variable.dtype),
            use_locking=False,
            **shared_scalars(variable, learning_rate),
        )

    return update_step
