"""The training and test steps traced as one tf.function each
(archbuilder/training/unnested_step_functions.py): `fit` trains the same weights, and `evaluate` and
validation give the same figures, as Keras's nested functions bit for bit, from a graph with no
call into a second function and each variable captured once; Keras's own functions where needed."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.first_step import build_before_tracing  # noqa: E402
from archbuilder.training.unnested_step_functions import use_unnested_step_functions  # noqa: E402


def _model(**compile_options):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"],
                  **compile_options)
    return model


def _data(count=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, 6, 6, 3)).astype("float32")
    return x, keras.utils.to_categorical(rng.integers(0, 3, count), 3)


def _dataset():
    return tf.data.Dataset.from_tensor_slices(_data()).batch(8)  # 8, 8 and a last batch of 4


def test_fit_trains_kerass_weights_bit_for_bit():
    stock, one = _model(), _model()
    assert use_unnested_step_functions(one)
    start = stock.get_weights()
    histories = [model.fit(_dataset(), epochs=2, verbose=0, shuffle=False, validation_data=_dataset()).history
                 for model in (stock, one)]
    assert histories[0] == histories[1] and "val_loss" in histories[0]  # validation: the test function
    assert stock.evaluate(_dataset(), verbose=0) == one.evaluate(_dataset(), verbose=0)
    for weight, a, b in zip(stock.weights, stock.get_weights(), one.get_weights()):
        np.testing.assert_array_equal(b, a, err_msg=weight.path)
    for variable, a, b in zip(stock.optimizer.variables, stock.optimizer.variables, one.optimizer.variables):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=variable.path)
    assert any(np.abs(a - s).max() > 1e-3 for a, s in zip(stock.get_weights(), start))  # training moved them


def _traced_graph(model, kind="train"):
    """The graph `fit` (or `evaluate`) traced for the model's training (or test) function: the
    switch's, or Keras's outer `multi_step_on_iterator` (a tf.function held by the closure Keras
    returns). The variables are made first, as `train` makes them (otherwise the first trace makes
    them and TensorFlow traces again)."""
    build_before_tracing(model, _dataset().element_spec)
    if kind == "train":
        model.fit(_dataset(), epochs=1, verbose=0, shuffle=False)
    else:
        model.evaluate(_dataset(), verbose=0)
    traced = getattr(model, f"{kind}_function")
    function = getattr(traced, "step_on_iterator", None)
    if function is None:
        (function,) = [cell.cell_contents for cell in traced.__closure__
                       if hasattr(cell.cell_contents, "_list_all_concrete_functions")]
    (concrete,) = function._list_all_concrete_functions()  # one trace, every batch size
    return concrete.graph


def _ops(graph) -> list[str]:
    return [op.type for op in graph.get_operations()]


@pytest.mark.parametrize("kind", ["train", "test"])
def test_one_graph_with_each_variable_captured_once(kind):
    one = _model()
    use_unnested_step_functions(one)
    graph = _traced_graph(one, kind)
    assert not {"PartitionedCall", "StatefulPartitionedCall"} & set(_ops(graph))  # no second function called
    # training reads and updates the weights, optimizer slots and metrics; evaluation the weights it
    # runs with (no dropout here: all) and the metrics
    used = one.variables + one.metrics_variables + (one.optimizer.variables if kind == "train" else [])
    variables = {id(v.value.handle) for v in used}
    captured = [id(external) for external, _ in graph.captures]
    assert len(captured) == len(set(captured))
    assert variables <= set(captured)  # the step's variables, each once
    assert _ops(graph).count("Placeholder") == len(captured) + 1  # and the iterator
    # Keras's own: the outer graph calls the step's, each variable passed again as an argument.
    stock = _traced_graph(_model(), kind)
    assert "StatefulPartitionedCall" in _ops(stock)
    (step,) = stock._functions.values()
    assert len(step.cached_definition.signature.input_arg) >= len(variables)


def test_train_and_test_on_batch_give_kerass_values():
    stock, one = _model(), _model()
    use_unnested_step_functions(one)
    x, y = _data(8)
    for _ in range(3):
        assert stock.train_on_batch(x, y) == one.train_on_batch(x, y)
        assert stock.test_on_batch(x, y) == one.test_on_batch(x, y)
    for a, b in zip(stock.get_weights(), one.get_weights()):
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("options", [{"steps_per_execution": 2}, {"jit_compile": True}, {"run_eagerly": True}])
def test_kerass_own_function_where_one_call_runs_several_steps_or_xla_or_eagerly(options):
    model = _model(**options)
    assert not use_unnested_step_functions(model)
    assert "make_train_function" not in vars(model)


def test_kerass_own_function_under_a_strategy_and_the_switch_made_once():
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert not use_unnested_step_functions(_model())
    model = _model()
    assert use_unnested_step_functions(model)
    assert not use_unnested_step_functions(model)
    model.fit(_dataset(), epochs=1, verbose=0, shuffle=False)
    first = model.train_function
    model.make_train_function()
    assert model.train_function is first  # kept, as Keras keeps its own
    model.make_train_function(force=True)
    assert model.train_function is not first
    assert "make_test_function" in vars(model)


def test_train_traces_its_step_inside_the_one_function(tmp_path, monkeypatch):
    """`train` switches its model: the step is traced in the graph of `step_on_iterator` itself,
    not in a `one_step_on_data` function of its own (Keras's)."""
    from train_support import TINY_SPEC, image_folder, invoke

    photos = image_folder(tmp_path / "images", per_class=5)
    graphs = []
    stock = keras.Model.train_step

    def recorded(self, data):  # runs while TensorFlow traces the step
        graphs.append(tf.compat.v1.get_default_graph().name)
        return stock(self, data)

    monkeypatch.setattr(keras.Model, "train_step", recorded)
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(graphs) == 1 and "step_on_iterator" in graphs[0] and "one_step_on_data" not in graphs[0], graphs
