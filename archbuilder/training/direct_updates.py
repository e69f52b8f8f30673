"""Each weight's update called directly when no distribution strategy runs: no identity copies.

Keras's TensorFlow optimizer hands the gradients to the update through tf.distribute even without
a strategy (keras/src/backend/tensorflow/optimizer.py `_backend_update_step`): it all-reduces them
in the default replica context, which copies each one with an Identity op, then calls each
weight's `update_step` through `extended.update`. In the traced training step that is one op per
weight and the Python around it, built while tracing the first step (~0.9 ms an op on a
first-generation EPYC; bench/RESULTS.md) and then removed by grappler: EfficientNet-B0's graph at
224x224 has 4,411 ops with them and 4,197 without, ResNet-50's 3,100 and 2,885. Without a strategy the all-reduce is the identity and the update
context sets nothing, so the updates are the same ops on the same values; here `update_step` is
called for each weight in turn. Under a strategy (`tf.distribute.has_strategy()`: multi-worker
training) Keras's own path runs.

The switch is made on the optimizer *instance* (like fused_adam.py's): the compiled model's config
and its files are those of the stock optimizer, and an optimizer loaded with --resume is switched
again.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def use_direct_updates(optimizer) -> bool:
    """Give a TensorFlow Keras optimizer the direct updates above; False, and nothing changed,
    where it already has them or is not one."""
    stock = getattr(optimizer, "_backend_update_step", None)
    if stock is None or "_backend_update_step" in vars(optimizer):
        return False

    def backend_update_step(grads, trainable_variables, learning_rate):
        if tf.distribute.has_strategy():
            return stock(grads, trainable_variables, learning_rate)
        for grad, variable in zip(grads, trainable_variables):
            # Keras's path unwraps Keras variables to their tf.Variable before update_step.
            optimizer.update_step(grad, variable.value if isinstance(variable, keras.Variable) else variable,
                                  learning_rate)

    optimizer._backend_update_step = backend_update_step
    return True
