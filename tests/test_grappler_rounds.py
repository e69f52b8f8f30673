"""Grappler once, without tfg, for `train`'s functions (archbuilder/training/grappler_rounds.py):
what TensorFlow runs under the scope, that it computes the same training step, and that `train`
uses it. The time it saves is measured in bench/ (bench/grappler_rounds.py, bench/first_step.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from train_support import REPO, TINY_SPEC, image_folder, invoke

import keras  # noqa: I001  (train_support sets TensorFlow's environment first)
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context

from archbuilder.training.direct_updates import use_direct_updates
from archbuilder.training.fused_adam import use_fused_adam
from archbuilder.training.fused_layers import use_fused_layers
from archbuilder.training.grappler_rounds import one_grappler_round

# One function, called under TensorFlow's options, under the scope, and under TensorFlow's again;
# grappler's log (TF_CPP_VMODULE=meta_optimizer=1) names each pass it runs on each function.
_CHILD = """
import sys
import tensorflow as tf
from archbuilder.training.grappler_rounds import one_grappler_round

v = tf.Variable(tf.ones((4, 4)))

@tf.function
def f(x):
    y = tf.matmul(x, v) * 2.0 + 1.0
    v.assign_add(y)
    return tf.reduce_sum(y)

for mark, scoped in (("default", False), ("scoped", True), ("default again", False)):
    sys.stderr.write(f"=== {mark}\\n")
    sys.stderr.flush()
    if scoped:
        with one_grappler_round():
            f(tf.ones((4, 4)))
    else:
        f(tf.ones((4, 4)))
"""


def _passes_by_call() -> dict[str, list[str]]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "meta_optimizer=1", "PYTHONPATH": str(REPO)}
    child = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120, check=True)
    passes: dict[str, list[str]] = {}
    mark = None
    for line in child.stderr.splitlines():
        if line.startswith("=== "):
            mark = line[4:]
            passes[mark] = []
        elif mark is not None and (found := re.search(r"meta_optimizer\.cc:\d+\] (\w+).*?: Graph size after", line)):
            passes[mark].append(found.group(1))
    return passes


def test_the_scope_runs_each_grappler_pass_once_and_no_tfg_then_gives_the_options_back():
    passes = _passes_by_call()
    # TensorFlow's default: two rounds, each with its tfg pass.
    assert passes["default"].count("remapper") == 2 and passes["default"].count("constant_folding") == 2
    assert "tfg_optimizer" in passes["default"]
    # Under the scope the function is instantiated again, under its own options: one round, no tfg.
    assert passes["scoped"].count("remapper") == 1 and passes["scoped"].count("constant_folding") == 1
    assert "tfg_optimizer" not in passes["scoped"]
    # After it, TensorFlow's own options again: the first instantiation is reused, nothing optimized.
    assert passes["default again"] == []


def test_the_scope_leaves_the_threads_options_as_they_were():
    before = context.context().function_call_options.config_proto_serialized
    with one_grappler_round():
        inside = config_pb2.ConfigProto.FromString(context.context().function_call_options.config_proto_serialized)
    assert inside.graph_options.rewrite_options.meta_optimizer_iterations == rewriter_config_pb2.RewriterConfig.ONE
    assert inside.graph_options.rewrite_options.disable_tfg_optimizer
    assert context.context().function_call_options.config_proto_serialized == before


def _small_network():
    """Normalization constants, convolutions, batch norm, swish, a residual add, dropout, pooling,
    a dense head: the layers whose graphs grappler rewrites most (a division by a constant made a
    product with its reciprocal, which rounds differently; fusions; dropout's seed arithmetic)."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.229**2, 0.224**2, 0.225**2])(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("swish")(x)
    y = keras.layers.Conv2D(8, 3, padding="same")(x)
    y = keras.layers.Activation("relu")(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.Dropout(0.2, noise_shape=(None, 1, 1, 8), seed=3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="gelu")(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    use_fused_adam(model.optimizer)
    use_direct_updates(model.optimizer)
    use_fused_layers(model)
    return model


def test_one_round_trains_the_same_step_bit_for_bit():
    keras.utils.set_random_seed(0)
    model = _small_network()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((6, 16, 16, 3), dtype="float32"))
    y = tf.one_hot(rng.integers(0, 5, 6), 5)
    spec = (tf.TensorSpec((None, 16, 16, 3)), tf.TensorSpec((None, 5)))
    model.optimizer.build(model.trainable_variables)
    step = tf.function(model.train_step).get_concrete_function(spec)
    variables = [*model.variables, *model.optimizer.variables]
    start = [v.numpy() for v in variables]

    def two_steps():  # from the same state each time; the second step sees Adam's moments
        for variable, value in zip(variables, start):
            variable.assign(value)
        model.reset_metrics()  # the loss reported is the metrics' running mean
        losses = [step((x, y))["loss"].numpy() for _ in range(2)]
        return losses, [v.numpy() for v in variables]

    default_losses, default_after = two_steps()
    with one_grappler_round():
        once_losses, once_after = two_steps()
    assert [loss.tobytes() for loss in once_losses] == [loss.tobytes() for loss in default_losses]
    for variable, a, b in zip(variables, default_after, once_after):
        assert a.tobytes() == b.tobytes(), variable.path
    # The steps did train: a state that did not change would make the comparison empty.
    assert any(a.tobytes() != s.tobytes() for a, s in zip(default_after, start))


def test_train_traces_its_step_under_one_round_and_gives_the_options_back(tmp_path, monkeypatch):
    photos = image_folder(tmp_path / "images", per_class=5)
    seen = []
    stock = keras.Model.train_step

    def recorded(self, data):  # runs while TensorFlow traces the step: the options its calls will carry
        options = config_pb2.ConfigProto.FromString(context.context().function_call_options.config_proto_serialized)
        seen.append((options.graph_options.rewrite_options.meta_optimizer_iterations,
                     options.graph_options.rewrite_options.disable_tfg_optimizer))
        return stock(self, data)

    monkeypatch.setattr(keras.Model, "train_step", recorded)
    before = context.context().function_call_options.config_proto_serialized
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert seen == [(rewriter_config_pb2.RewriterConfig.ONE, True)]
    assert context.context().function_call_options.config_proto_serialized == before
