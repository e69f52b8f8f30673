"""The TF1-exact glorot_uniform: bit-exact Philox stream, serializable, saved and reloaded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archbuilder.keras.initializers import GlorotUniformTF1
from archbuilder.keras.graph import build_model
from archbuilder.keras.philox import TF1_DEFAULT_GRAPH_SEED, philox_uint32, tf1_random_uniform, uint32_to_unit_float
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


@pytest.mark.parametrize("shape,seed2", [((7,), 0), ((3, 3, 64, 64), 0), ((1, 1, 6, 2), 0), ((10, 3), 5), ((2, 2, 2, 3), 123456789)])
def test_numpy_philox_equals_tensorflow_kernel_bit_for_bit(shape, seed2):
    # A freshly traced tf.function holds a new RandomUniform kernel, whose stream starts anew.
    draw = tf.function(lambda: tf.raw_ops.RandomUniform(shape=shape, dtype=tf.float32, seed=TF1_DEFAULT_GRAPH_SEED, seed2=seed2))
    expected = draw().numpy().reshape(-1)
    ours = uint32_to_unit_float(philox_uint32(expected.size, TF1_DEFAULT_GRAPH_SEED, seed2))
    assert np.array_equal(expected, ours)


def test_tf1_uniform_range_and_prefix_property():
    small = tf1_random_uniform((5,), -0.5, 0.5, seed=0)
    large = tf1_random_uniform((3, 3, 512, 512), -0.5, 0.5, seed=0)
    assert np.array_equal(small, large.reshape(-1)[:5])  # every draw is a prefix of one stream
    assert large.min() >= -0.5 and large.max() < 0.5 and large.dtype == np.float32


def test_glorot_limit_and_fresh_stream_per_call():
    init = GlorotUniformTF1(seed=0)
    a = np.asarray(init((3, 3, 16, 32)))
    b = np.asarray(init((3, 3, 16, 32)))
    assert np.array_equal(a, b)  # like a new TF1 kernel per variable
    limit = math.sqrt(6 / (9 * 16 + 9 * 32))
    assert np.abs(a).max() <= limit and np.abs(a).max() > 0.95 * limit


def test_initializer_is_a_serializable_keras_initializer():
    init = GlorotUniformTF1(seed=3)
    config = keras.initializers.serialize(init)
    restored = keras.initializers.deserialize(config)
    assert isinstance(restored, GlorotUniformTF1) and restored.seed == 3
    assert np.array_equal(np.asarray(restored((4, 5))), np.asarray(init((4, 5))))


def test_saved_model_with_tf1_initializer_reloads_with_same_outputs(tmp_path):
    checked = load_checked_spec(REPO / "tests" / "specs" / "convolutional_block.yaml")
    model = build_model(checked.spec, checked.plan)
    path = tmp_path / "block.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(reloaded(x)))
    assert type(reloaded.get_layer("res1a_branch1").kernel_initializer) is GlorotUniformTF1
