"""`training.precision`: Keras's global dtype policy while a run's model is built and trained.

Under `mixed_float16` Keras's `compile` wraps the optimizer in a LossScaleOptimizer (float16's
small range would flush small gradients to zero); `mixed_bfloat16` has float32's range and needs
none. Softmax layers are built in float32 (keras/graph.py). The policy is put back afterwards, so
a process that trains twice (the tests) does not carry it over.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras


@contextmanager
def precision_policy(name: str):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
