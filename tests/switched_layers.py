"""For the tests of training kernels switched on layer instances (fused GELU, layer norm,
attention, the timed convolution switches): a model and its switched twin compared on outputs and
every gradient, the switched model's file reloaded, a timed switch's cache written."""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.kernel_choice import cache_path, machine_key, write_shapes
from archbuilder.training.precision import precision_policy
from archbuilder.training.timed_switch import CACHE_FORMAT


# float32's unit roundoff.
UNIT_ROUNDOFF = 2.0 ** -24


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u) ("Accuracy and Stability of Numerical Algorithms", (3.5),
    4.2): a float32 result whose every term went through at most n roundings (a dot product of n
    terms, or n + 1 terms summed in any order) differs from the exact sum by at most gamma_n times
    the sum of the terms' magnitudes."""
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def twin(stock):
    """A copy of `stock` with its weights, for the switch to be made on."""
    copy = keras.models.clone_model(stock)
    copy.set_weights(stock.get_weights())
    return copy


def outputs_and_gradients(model, x, upstream) -> list:
    """`model`'s training-mode outputs on `x`, then the gradients of sum(outputs * upstream) for
    `x` and for each trainable weight, inside a tf.function (as in training), as numpy arrays."""
    @tf.function
    def run(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = model(inputs, training=True)
            # In float32 (no op where the outputs are): a mixed_bfloat16 model's are bfloat16.
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * upstream)
        return [outputs, *tape.gradient(loss, [inputs, *model.trainable_weights])]

    # bfloat16 values (mixed_bfloat16) as float32, which holds each exactly.
    return [tf.cast(t, tf.float32).numpy() for t in run(tf.constant(x))]


def named_outputs_and_gradients(stock, fused, x, upstream):
    """(name, stock's value, fused's value) for the outputs, the input gradient and each trainable
    weight's gradient (`outputs_and_gradients`; a weight named by its path, e.g. "conv/bias")."""
    names = ["outputs", "input gradient"] + [w.path for w in stock.trainable_weights]
    return zip(names, outputs_and_gradients(stock, x, upstream), outputs_and_gradients(fused, x, upstream))


def assert_same_outputs_and_gradients(stock, fused, x, upstream, bound=None, gradient_bound=None) -> None:
    """`fused`'s training-mode outputs and gradients (`outputs_and_gradients`) equal `stock`'s:
    bit for bit, or within `bound(stock's values)` of each quantity where a bound is given
    (`gradient_bound`: for the gradients only, the outputs bit for bit)."""
    import numpy as np

    for index, (name, want, have) in enumerate(named_outputs_and_gradients(stock, fused, x, upstream)):
        limit = bound if index == 0 or gradient_bound is None else gradient_bound
        if limit is None:
            np.testing.assert_array_equal(have, want, err_msg=name)
        else:
            np.testing.assert_allclose(have, want, rtol=0, atol=limit(want), err_msg=name)


def summation_order_bound(values, dtype="float32") -> float:
    """A `gradient_bound` for switches whose gradients are Keras's values summed in another order.

    The tape sums a tensor's gradient from each of its consumers, and TensorFlow's CPU runtime
    does not fix the order of those sums from run to run (Keras's own model against itself
    differs by an ulp in its input gradient): reordering k float32 terms moves a sum by at most
    (k - 1) ulps of the terms' magnitudes, then carried through a few layers. 1e-6 (~17 ulps)
    of each quantity's own scale covers that; a dropped or doubled path moves it by its scale.
    Sums in bfloat16 (`mixed_bfloat16`): the same count of bfloat16's ulps, 2**16 times
    float32's (7 fraction bits against 23), 0.066 of the scale."""
    import numpy as np

    ulps_over_float32 = {"float32": 1.0, "bfloat16": 2.0 ** (23 - 7)}[dtype]
    return 1e-6 * ulps_over_float32 * float(np.abs(values).max())


def training_graph(model, input_shape):
    """The graph of a traced step (outputs, a loss, the weights' gradients) of `model` on inputs
    of `input_shape` with the batch size unknown, as in the traced training step."""
    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(inputs, training=True))
        return tape.gradient(loss, model.trainable_weights)

    return step.get_concrete_function(tf.TensorSpec([None, *input_shape])).graph


def training_graph_ops(model, input_shape) -> int:
    """The op count of `training_graph`."""
    return len(training_graph(model, input_shape).get_operations())


def switched_and_reloaded(fused, switch, path):
    """Make `switch` on `fused`, check that it lives on the instances only (the config unchanged, a
    second switch makes none), save `fused` to `path`; the file loaded back in safe mode."""
    config = fused.get_config()
    switch(fused)
    assert fused.get_config() == config  # the switch is on the instances' call, not in the config
    assert switch(fused) == []  # switched once
    fused.save(path)
    return keras.models.load_model(path, safe_mode=True)


def switches_nothing_under(policy, switch, make_model) -> bool:
    """Whether `switch` leaves alone the model `make_model()` builds under Keras's dtype policy
    `policy` (e.g. "mixed_bfloat16"); the process's policy is as it was afterwards."""
    with precision_policy(policy):
        return switch(make_model()) == []


def cache_decisions(switch, decision: bool, model, batch_size: int) -> None:
    """A valid cache of timed switch `switch` (timed_switch.py) for `model`'s candidates at
    `batch_size`, as train writes it, without timing: every shape `decision` (the other kernel
    timed at half Keras's time, or not switched anyway)."""
    shapes = {switch.shape_key(layer, batch_size): {"ms": {"keras": 2.0, switch.kernel: 1.0}, "switch": decision}
              for layer in model.layers if switch.candidate(layer)}
    assert write_shapes(cache_path(name=switch.cache_name), machine_key(), CACHE_FORMAT, shapes)
