"""What `train` waits for before its first step: made shorter, and said while it waits.

Before the first training step of a process, TensorFlow traces the training step into a graph
(Python runs the model, the gradient tape and the optimizer once, symbolically), optimizes that
graph (grappler; with oneDNN also its layout rewrite) and creates its kernels. For the documented
ResNet-50 that is seconds to tens of seconds on 2 cores (bench/first_step.py, bench/RESULTS.md),
during which Keras prints nothing; `GraphPreparation` says so, and how long it took.

`build_before_tracing` removes a second trace. Without a distribution strategy Keras builds the
optimizer's slots (Adam's moments) and the compiled metrics' variables lazily, *inside* the first
trace of the training step; a `tf.function` that creates variables on its first trace is traced
again (TensorFlow's polymorphic_function: the variable-creating trace initializes them, a second,
variable-free trace runs). Building them before `fit` makes that one trace, half the tracing time.
Under a strategy Keras already does this itself (`_maybe_symbolic_build`).

It also creates them faster. TensorFlow names each variable's handle op after the variable (its
`debug_name` attribute), so each named variable is an op the eager runtime has not seen, and it
runs each new op as a small function, instantiated and optimized: ~2 ms a variable here against
~0.3 ms for an op seen before (bench/RESULTS.md, 2026-12-05 fifth session). The slots are created
without a TensorFlow name (`tf.Variable`'s; Keras's own names and paths, which its files and
messages use, are unchanged): ResNet-50's 430 in 0.8 s instead of 1.5 s.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf


def _without_tensorflow_name(next_creator, **kwargs):
    kwargs["name"] = None  # TensorFlow's default, "Variable"
    return next_creator(**kwargs)


def build_before_tracing(model, element_spec) -> None:
    """Create every variable the training step needs (optimizer slots, compiled metrics and loss)
    from the dataset's `element_spec` (x, y), so that its first trace creates none."""
    with tf.variable_creator_scope(_without_tensorflow_name):
        _build(model, element_spec)


def _build(model, element_spec) -> None:
    x, y = (keras.KerasTensor(tuple(spec.shape), spec.dtype.name) for spec in element_spec)
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1:
        # Keras's own build (what `fit` runs under a strategy): it runs the model symbolically
        # to learn its output, ~1 s of CPU for ResNet-50.
        model._symbolic_build(data_batch=(x, y))
        return
    # A functional model already knows its output; the metrics and the loss need only that.
    for compiled in (model._compile_metrics, model._compile_loss):
        if compiled is not None and not compiled.built:
            compiled.build(y, outputs[0])
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def trace_prediction_once(model, element_spec) -> None:
    """Trace Keras's predict function for any batch size now, once, instead of twice at the end
    of the first epoch: `predict_on_batch` (training/metrics.py, the test set's figures after
    every epoch) traces it for its first batch's size, then again, generalized, for the last,
    smaller batch (`reduce_retracing`). A trace for batch size None serves every later call."""
    import tensorflow as tf

    model.make_predict_function()
    spec = tf.TensorSpec((None, *element_spec.shape[1:]), element_spec.dtype)
    model.predict_function.get_concrete_function([(spec,)])


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
