"""Adam as one fused op per weight (archbuilder/training/fused_adam.py): Keras's Adam to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.fused_adam import use_fused_adam  # noqa: E402

RATE = 0.01


def _model():
    # No batch norm: a bias before one has a gradient that is zero up to rounding, and Adam divides
    # by the gradient's size, so its step would be the sign of rounding noise on either path.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, activation="tanh")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="tanh")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


# AdamW's decay (lr * 0.1 = 1e-3 of each weight a step, ~1e-4 absolute here) is applied by Keras
# on both paths; were the fused path to skip it, the difference would be 100x the atol below.
OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(RATE),
    "adamw": lambda: keras.optimizers.AdamW(RATE, weight_decay=0.1),
}


def _trained(fused: bool, x, y, optimizer: str = "adam", steps: int = 4):
    model = _model()
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss="categorical_crossentropy")
    if fused:
        assert use_fused_adam(model.optimizer)
    before = model.get_weights()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model, [after - start for start, after in zip(before, model.get_weights())]


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fused_adam_takes_kerass_steps(optimizer):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 16), 3)
    keras_model, expected = _trained(False, x, y, optimizer)
    fused_model, got = _trained(True, x, y, optimizer)
    for weight, want, have in zip(keras_model.weights, expected, got):
        # One formula, one difference in its constants: Keras rounds 1 - beta_2 (0.001) to float32
        # once, TensorFlow's kernel computes 1 - float32(0.999) = 0.00099998713, 1.29e-5 larger
        # relatively; through sqrt(v) every fused step is ~6.4e-6 relatively larger. rtol 2e-5
        # leaves 3x above that; atol (1e-4 of one step, ~RATE) covers changes that cancel over the
        # steps, where float32 ulps of the step dominate. A wrong formula is far outside: without
        # bias correction the first step would be 0.32x, without epsilon inside ~1e-3 relatively.
        assert np.abs(want).max() > RATE / 2, weight.path  # the weight did move
        np.testing.assert_allclose(have, want, rtol=2e-5, atol=1e-4 * RATE, err_msg=weight.path)


def test_the_graph_has_one_adam_op_per_weight_and_the_model_file_a_plain_adam(tmp_path):
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(RATE), loss="categorical_crossentropy")
    assert use_fused_adam(model.optimizer)
    model.optimizer.build(model.trainable_variables)
    data = (tf.zeros((2, 6, 6, 3)), tf.one_hot([0, 1], 3))
    graph = tf.function(model.train_step).get_concrete_function(data).graph
    fused = [op for op in graph.get_operations() if op.type == "ResourceApplyAdam"]
    assert len(fused) == len(model.trainable_variables) == 6
    # The step's scalars are built once and shared by all six updates: one pow per beta.
    assert [op.type for op in graph.get_operations()].count("Pow") == 2
    config = model.optimizer.get_config()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is keras.optimizers.Adam and "update_step" not in vars(loaded.optimizer)
    assert loaded.optimizer.get_config() == config


def test_other_optimizers_are_left_alone():
    assert not use_fused_adam(keras.optimizers.SGD(0.1))
    assert not use_fused_adam(keras.optimizers.Adamax(0.1))
    assert not use_fused_adam(keras.optimizers.Adam(0.1, amsgrad=True))
