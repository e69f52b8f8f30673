"""Keras's training and test functions traced as one tf.function each, not one calling another.

Keras 3 on TensorFlow (keras/src/backend/tensorflow/trainer.py `_make_function`) makes the
training step a tf.function (`one_step_on_data`) and calls it from a second one
(`multi_step_on_iterator`) that takes the next batch from the dataset's iterator; the test step
(validation, `evaluate`) the same way. Tracing the outer function traces the inner one into a
graph of its own, and each of the step's variables is captured twice, a placeholder in each graph
and an input of the call between them; before the first call grappler inlines the inner graph
into the outer one and prunes the copies. For ResNet-152 at 224x224 the training function is a
2,188-op graph calling the step's 6,961 ops, and everything before the first step runs on one
core while the other waits: the trace, grappler, the instantiation. One function instead:
the trace 2.91 / 2.70 s against 3.40 / 4.26 s, the first call's one-off 5.07 / 3.25 s against
5.59 / 7.68 s, and `train`'s first step 2.7 s sooner (median of three alternated pairs; steps as
fast; bench/RESULTS.md, nineteenth session).

With one step per call (`steps_per_execution` 1, Keras's default and `train`'s), without XLA
(`jit_compile`, which Keras turns off on CPU) and without a distribution strategy, the functions
here call the same step in the same graph: the outer function as Keras writes it for one step,
with Keras's own step body (`distribute_strategy.run` of the step, then `reduce_per_replica`)
traced inline. The ops that run are those grappler left after inlining: the same math (the tests
compare weights and metrics bit for bit). A call with something other than a tf.data iterator
(`train_on_batch`, `test_on_batch`) runs the step as its own tf.function, as Keras's does.

The switch is made on the model *instance* (its `make_train_function` and `make_test_function`),
like the other training switches: model files and the compiled model's config do not change.
"""

from __future__ import annotations

import tensorflow as tf
from keras.src.backend.tensorflow.trainer import reduce_per_replica

KINDS = ("train", "test")  # Keras's functions built by `_make_function`, for fit's steps and evaluation


def use_unnested_step_functions(model) -> bool:
    """Make `model`'s training and test functions the single tf.functions above; False, and nothing
    changed, where Keras's own are needed (several steps per call, XLA, eager, a strategy) or
    already switched."""
    if "make_train_function" in vars(model):
        return False
    if model.steps_per_execution != 1 or model.jit_compile or model.run_eagerly:
        return False
    # built or switched in a strategy's scope
    if model._distribute_strategy is not None or tf.distribute.has_strategy():
        return False
    for kind in KINDS:
        setattr(model, f"{kind}_function", None)  # made again, as the model's next fit would
        setattr(model, f"make_{kind}_function", _maker(model, kind))
    return True


def _maker(model, kind: str):
    attribute = f"{kind}_function"

    def make_function(force=False):
        if getattr(model, attribute) is None or force:
            setattr(model, attribute, _one_function(model, getattr(model, f"{kind}_step")))
        return getattr(model, attribute)

    return make_function


def _one_function(model, step_function):
    strategy = model.distribute_strategy  # the default strategy here: no other is in scope

    def one_step_on_data(data):
        outputs = strategy.run(step_function, args=(data,))
        return reduce_per_replica(outputs, strategy, reduction="auto")

    one_step = model._autoconvert_optionals(one_step_on_data)

    @tf.autograph.experimental.do_not_convert
    def step_on_iterator(iterator):
        return tf.experimental.Optional.from_value(one_step(iterator.get_next()))

    step_on_iterator = tf.function(step_on_iterator, reduce_retracing=True)
    # traced only if called with data (train_on_batch, test_on_batch)
    step_on_data = tf.function(tf.autograph.experimental.do_not_convert(one_step), reduce_retracing=True)

    def function(iterator):
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            outputs = step_on_iterator(iterator)
            if not outputs.has_value():
                raise StopIteration
            return outputs.get_value()
        for data in iterator:  # one batch per call: steps_per_execution is 1
            return step_on_data(data)
        return None

    function.step_on_iterator = step_on_iterator  # its traced graph, for inspection (tests)
    return function
