"""What `train` waits for before its first step, said while it waits.

Before the first training step of a process, TensorFlow traces the training step into a graph
(Python runs the model, the gradient tape and the optimizer once, symbolically), optimizes that
graph (grappler; with oneDNN also its layout rewrite) and creates its kernels. For the documented
ResNet-50 that is tens of seconds on 2 cores (bench/first_step.py, bench/RESULTS.md), during which
nothing else is printed; this callback says so, and how long it took.
"""

from __future__ import annotations

import time

import keras


class GraphPreparation(keras.callbacks.Callback):
    """Says "preparing the graph" when fit starts and how long it took once the first step is done."""

    def __init__(self, say):
        super().__init__()
        self.say = say
        self.started: float | None = None
        self.seconds: float | None = None  # fit start to the end of the first step

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.say("preparing the graph: tracing the training step and optimizing it for this CPU "
                 "(once per process; the first step waits for it)")

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is None and self.started is not None:
            self.seconds = round(time.perf_counter() - self.started, 1)
            self.say(f"graph ready: the first step ended {self.seconds:g} s after training started")
