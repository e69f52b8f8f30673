"""Each weight's update called directly without a strategy (archbuilder/training/direct_updates.py):
the same updates as Keras's path bit for bit, one op per weight fewer in the traced step."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.direct_updates import use_direct_updates  # noqa: E402
from archbuilder.training.fused_adam import use_fused_adam  # noqa: E402

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(0.01),
    "fused adam": lambda: keras.optimizers.Adam(0.01),
    "sgd momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
}


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _compiled(optimizer: str, direct: bool):
    model = _model()
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss="categorical_crossentropy")
    if optimizer == "fused adam":
        assert use_fused_adam(model.optimizer)
    if direct:
        assert use_direct_updates(model.optimizer)
    return model


def _batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 6, 6, 3)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 3, 8), 3)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_the_updates_are_kerass_bit_for_bit(optimizer):
    x, y = _batch()
    stock, direct = _compiled(optimizer, False), _compiled(optimizer, True)
    start = stock.get_weights()
    for _ in range(3):
        assert stock.train_on_batch(x, y) == direct.train_on_batch(x, y)
    # The same update ops on the same gradients (the identity copies dropped change no value).
    for variable, a, b in zip(stock.optimizer.variables, stock.optimizer.variables, direct.optimizer.variables):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=variable.path)
    for weight, a, b, s in zip(stock.weights, stock.get_weights(), direct.get_weights(), start):
        np.testing.assert_array_equal(b, a, err_msg=weight.path)
    assert any(np.abs(a - s).max() > 1e-3 for a, s in zip(stock.get_weights(), start))  # training moved them


def _graph_ops(model) -> list[str]:
    model.optimizer.build(model.trainable_variables)
    x, y = _batch()
    step = tf.function(model.train_step)
    return [op.type for op in step.get_concrete_function((tf.constant(x), tf.constant(y))).graph.get_operations()]


def test_the_traced_step_has_no_identity_copy_per_weight_and_files_stay_stock(tmp_path):
    stock, direct = _compiled("fused adam", False), _compiled("fused adam", True)
    stock_ops, direct_ops = _graph_ops(stock), _graph_ops(direct)
    weights = len(stock.trainable_variables)
    assert len(stock_ops) - len(direct_ops) >= weights, (len(stock_ops), len(direct_ops))
    assert stock_ops.count("Identity") - direct_ops.count("Identity") == weights
    assert direct_ops.count("ResourceApplyAdam") == weights  # every weight still updated

    assert not use_direct_updates(direct.optimizer)  # switched once
    config = direct.optimizer.get_config()
    direct.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert "_backend_update_step" not in vars(loaded.optimizer)
    assert loaded.optimizer.get_config() == config


def test_under_a_strategy_kerass_own_path_runs():
    """Under a distribution strategy the all-reduce is real: the switch hands the step back to
    Keras. With two replicas that is what keeps them equal: tests/test_distribute.py's two workers
    train through `train` with the switch made and fail without this hand-back."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        stock, direct = _compiled("fused adam", False), _compiled("fused adam", True)
    x, y = _batch()
    for _ in range(2):
        assert stock.train_on_batch(x, y) == direct.train_on_batch(x, y)
    for a, b in zip(stock.get_weights(), direct.get_weights()):
        np.testing.assert_array_equal(b, a)
