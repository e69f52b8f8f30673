"""Batch norm in training as one fused op (archbuilder/training/fused_batch_norm.py): Keras's
batch norm to float rounding, with a much smaller training graph."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.fused_batch_norm import fusable, use_fused_batch_norm  # noqa: E402
from archbuilder.training.instance_switch import gpu_present  # noqa: E402
from archbuilder.training.precision import precision_policy  # noqa: E402

CHANNELS = 6


def _model(**batch_norm):
    inputs = keras.Input((5, 5, 3))
    x = keras.layers.Conv2D(CHANNELS, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn", momentum=0.9, **batch_norm)(x)
    x = keras.layers.Flatten()(keras.layers.ReLU()(x))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


def _pair(**batch_norm):
    """The same model twice, the second one switched; batch-norm weights and statistics far from
    their initial 1/0 so that a formula mixing them up shows."""
    keras.utils.set_random_seed(0)
    stock = _model(**batch_norm)
    rng = np.random.default_rng(1)
    bn = stock.get_layer("bn")
    for weight in bn.weights:
        weight.assign(rng.uniform(0.5, 2.0, CHANNELS).astype("float32"))
    fused = keras.models.clone_model(stock)
    fused.set_weights(stock.get_weights())
    assert use_fused_batch_norm(fused) == ["bn"]
    return stock, fused


def _step(model, x, upstream, training=True):
    """Outputs of `bn` and the gradients of sum(outputs * upstream) for its input and weights,
    inside a tf.function (as in training)."""
    bn = model.get_layer("bn")
    conv_out = model.get_layer("conv")(tf.constant(x))

    @tf.function
    def run(h):
        with tf.GradientTape() as tape:
            tape.watch(h)
            y = bn(h, training=training)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)  # no op in float32
        return [y, *tape.gradient(loss, [h, bn.gamma.value, bn.beta.value])]

    # bfloat16 (mixed_bfloat16) as float32, which holds each value exactly.
    return ([tf.cast(t, tf.float32).numpy() for t in run(conv_out)]
            + [bn.moving_mean.numpy(), bn.moving_variance.numpy()])


def test_fused_batch_norm_computes_kerass_outputs_gradients_and_moving_statistics():
    stock, fused = _pair()
    rng = np.random.default_rng(2)
    # Mean 3, spread 2 per channel: normalization has real work to do.
    x = (3.0 + 2.0 * rng.normal(size=(8, 5, 5, 3))).astype("float32")
    upstream = rng.normal(size=(8, 5, 5, CHANNELS)).astype("float32")
    names = ["outputs", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance"]
    for name, want, have in zip(names, _step(stock, x, upstream), _step(fused, x, upstream)):
        # Both compute in float32 over n = 8*5*5 = 200 values per channel, summed in different
        # orders: the statistics differ by ~sqrt(n) ulps (1.7e-6 relatively), and the outputs,
        # of size ~|gamma| * 3, and gradients, sums of 200 terms ~1, by that times their scale.
        # 2e-5 of each quantity's own scale leaves ~10x room; a formula error is far outside (the
        # unbiased variance in the moving statistics: 0.5%, a wrong momentum: >10%).
        scale = np.abs(want).max()
        np.testing.assert_allclose(have, want, rtol=0, atol=2e-5 * scale, err_msg=name)


def test_under_mixed_bfloat16_outputs_within_one_bfloat16_rounding():
    """`training.precision: mixed_bfloat16` on CPU: a bfloat16 input and output, float32 weights
    and statistics. Keras casts the input to float32, normalizes and rounds the output to
    bfloat16; the kernel does the same inside. Their float32 values differ as in float32 (2e-5 of
    the scale, above), and two such values can round to neighbouring bfloat16 numbers: one
    rounding step, at most 2**-7 of the value (7 fraction bits), for the output and the input
    gradient (bfloat16 too). The weights' gradients and the statistics stay float32 sums of the
    same bfloat16 values: the float32 bound. A formula error is still far outside (a wrong
    momentum: >10%; the unbiased variance: 0.5% of the moving variance, a float32 quantity)."""
    if gpu_present():
        pytest.skip("bfloat16 batch norm is switched on CPU only")
    with precision_policy("mixed_bfloat16"):
        stock, fused = _pair()
        rng = np.random.default_rng(5)
        x = (3.0 + 2.0 * rng.normal(size=(8, 5, 5, 3))).astype("float32")
        upstream = rng.normal(size=(8, 5, 5, CHANNELS)).astype("float32")
        names = ["outputs", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance"]
        for index, (name, want, have) in enumerate(zip(names, _step(stock, x, upstream), _step(fused, x, upstream))):
            scale = np.abs(want).max()
            relative = 2.0 ** -7 if index < 2 else 0.0
            np.testing.assert_allclose(have, want, rtol=relative, atol=2e-5 * scale, err_msg=name)


def test_a_compiled_training_step_keeps_kerass_moving_statistics():
    """The whole training step, as `fit` runs it: grappler (and oneDNN's rewrite where on) sees
    convolution, batch norm and ReLU together. On CPU the moving variance is the kernel's reserve
    space and the kernel averages the moving mean: both must still be Keras's."""
    stock, fused = _pair()
    rng = np.random.default_rng(4)
    x = (3.0 + 2.0 * rng.normal(size=(8, 5, 5, 3))).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, 8), 4)
    for model in (stock, fused):
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        model.train_on_batch(x, y)
    for name in ("moving_mean", "moving_variance"):
        want = getattr(stock.get_layer("bn"), name).numpy()
        have = getattr(fused.get_layer("bn"), name).numpy()
        # As in the test above: statistics over 200 values summed in different orders.
        np.testing.assert_allclose(have, want, rtol=0, atol=2e-5 * np.abs(want).max(), err_msg=name)


def test_inference_and_frozen_layers_run_kerass_own_code():
    stock, fused = _pair()
    x = np.random.default_rng(3).normal(size=(4, 5, 5, 3)).astype("float32")
    np.testing.assert_array_equal(fused(x, training=False).numpy(), stock(x, training=False).numpy())
    fused.get_layer("bn").trainable = False
    stock.get_layer("bn").trainable = False
    np.testing.assert_array_equal(fused(x, training=True).numpy(), stock(x, training=True).numpy())


def test_the_training_graph_holds_fused_ops_and_the_model_file_stock_layers(tmp_path):
    stock, fused = _pair()
    fused.compile(optimizer="sgd", loss="categorical_crossentropy")
    data = (tf.zeros((2, 5, 5, 3)), tf.one_hot([0, 1], 4))
    graph = tf.function(fused.train_step).get_concrete_function(data).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("FusedBatchNormV3") == 1 and types.count("FusedBatchNormGradV3") == 1
    assert "Mean" not in types  # Keras's moments are gone (nothing else here takes a mean)
    if not gpu_present():
        # The layer's forward ops: its four variables' reads (8 with their captures), the fused op
        # (which also averages the moving mean), the moving variance's average (5), two assigns.
        # The first form of the switch took 32 (its Bessel correction and both averages in ops).
        forward = [op for op in graph.get_operations() if "/bn" in op.name and not op.name.startswith("gradient")]
        assert len(forward) <= 16, [op.type for op in forward]
    # The gradient is recorded on the tape for the layer's output alone (tape_gradient.py): no
    # zeros for the fused op's five other outputs, which TensorFlow's tape makes for V3 (five
    # constants and fills and a ZerosLike a layer before; nothing else here makes any).
    assert "Fill" not in types and "ZerosLike" not in types, types
    fused.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert "call" not in vars(loaded.get_layer("bn"))
    assert loaded.get_layer("bn").get_config() == stock.get_layer("bn").get_config()


def test_a_synchronized_layer_on_one_replica_runs_the_same_fused_op():
    """Without a strategy a synchronized layer's statistics are its batch's: the fused op, bit for
    bit an unsynchronized layer's (Keras's own call differs by rounding, ~1e-6 relatively). Under
    several replicas it keeps Keras's call: tests/test_synchronized_moments.py."""
    _, plain = _pair()
    _, synchronized = _pair(synchronized=True)
    rng = np.random.default_rng(6)
    x = (3.0 + 2.0 * rng.normal(size=(8, 5, 5, 3))).astype("float32")
    upstream = rng.normal(size=(8, 5, 5, CHANNELS)).astype("float32")
    names = ["outputs", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance"]
    for name, want, have in zip(names, _step(plain, x, upstream), _step(synchronized, x, upstream)):
        np.testing.assert_array_equal(have, want, err_msg=name)


@pytest.mark.parametrize("case", ["renorm", "2-D input", "float16", "tiny epsilon"])
def test_layers_that_are_not_the_same_math_are_left_alone(case):
    if case == "2-D input":
        inputs = keras.Input((7,))
        layer = keras.layers.BatchNormalization()
    else:
        inputs = keras.Input((5, 5, 3))
        options = {"renorm": {"renorm": True}, "float16": {"dtype": "mixed_float16"},
                   "tiny epsilon": {"epsilon": 1e-6}}[case]
        layer = keras.layers.BatchNormalization(**options)
    model = keras.Model(inputs, layer(inputs))
    assert not fusable(layer)
    assert use_fused_batch_norm(model) == []
