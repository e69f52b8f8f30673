"""Self-attention in training as plain matrix products (archbuilder/training/fused_attention.py):
Keras's MultiHeadAttention outputs and gradients to float32 rounding, model files unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()

import keras  # noqa: E402

from archbuilder.keras.token_layers import SelfAttention  # noqa: E402
from archbuilder.training.fused_attention import attention_core, fusable, use_fused_attention  # noqa: E402
from tests.switched_layers import (  # noqa: E402
    outputs_and_gradients, switched_and_reloaded, switches_nothing_under, twin)

TOKENS, CHANNELS = 9, 16


def _model(**attention):
    inputs = keras.Input((TOKENS, 3))
    x = keras.layers.Dense(CHANNELS, name="dense")(inputs)
    x = SelfAttention(**{"num_heads": 2, "key_dim": 8, **attention}, name="attention")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def _pair(**attention):
    """The same model twice, the second switched; biases far from their initial zeros, so that a
    bias added to the wrong projection shows."""
    keras.utils.set_random_seed(0)
    stock = _model(**attention)
    rng = np.random.default_rng(1)
    for weight in stock.get_layer("attention").weights:
        if "bias" in weight.path:
            weight.assign(rng.uniform(-1.0, 1.0, weight.shape).astype("float32"))
    return stock, twin(stock)


@pytest.mark.parametrize("attention", [{}, {"use_bias": False}, {"num_heads": 3, "key_dim": 4, "value_dim": 6}])
def test_fused_attention_computes_kerass_outputs_and_gradients(attention):
    stock, fused = _pair(**attention)
    assert use_fused_attention(fused) == ["attention"]
    rng = np.random.default_rng(2)
    # Spread 2: logits of a few units, so that the softmax is neither flat nor one-hot.
    x = (2.0 * rng.normal(size=(6, TOKENS, 3))).astype("float32")
    upstream = rng.normal(size=(6, TOKENS, 4)).astype("float32")
    want, have = outputs_and_gradients(stock, x, upstream), outputs_and_gradients(fused, x, upstream)
    names = ["outputs", "inputs", *(w.path for w in stock.trainable_weights)]
    assert len(want) == len(have) == len(names)
    scales = dict(zip(names, (np.abs(a).max() for a in want)))
    for name, a, b in zip(names, want, have):
        # Both compute in float32, the same products summed in other orders (one [C, 3*H*D] matmul
        # against three einsums; the weight gradients sum over 6*9 = 54 rows): a few ulps apart
        # (~1e-6 relatively) times each quantity's own scale. 2e-5 of that scale leaves >10x room;
        # a formula error is far outside (without the 1/sqrt(key_dim) scale the outputs move by
        # ~10% of their scale, a key bias added to the query by more). The key bias's gradient is
        # zero in exact arithmetic (it adds the same q.b to every logit of a row, which softmax
        # ignores): what both compute is rounding, measured against the key kernel's gradient.
        scale = scales[name.replace("key/bias", "key/kernel")]
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * scale, err_msg=name)


def test_the_attention_cores_recorded_gradient_is_tensorflows_bit_for_bit():
    """attention_core records TensorFlow's own gradients of its ops, written out: the same values
    as differentiating the ops, and in a traced step (batch size unknown) without the batched
    products' broadcast reductions."""
    import tensorflow as tf

    def plain(q, k, v, scale):
        return tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale, axis=-1), v)

    rng = np.random.default_rng(3)
    q, k, v = (tf.constant(rng.normal(size=(2, 3, 5, 4)).astype("float32")) for _ in range(3))
    upstream = tf.constant(rng.normal(size=(2, 3, 5, 4)).astype("float32"))

    def gradients(core, q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            attended = core(q, k, v, 0.5)
        return [attended, *tape.gradient(attended, [q, k, v], output_gradients=upstream)]

    for want, have in zip(tf.function(gradients)(plain, q, k, v), tf.function(gradients)(attention_core, q, k, v)):
        np.testing.assert_array_equal(have.numpy(), want.numpy())

    spec = tf.TensorSpec([None, 3, 5, 4])
    ops = [len(tf.function(lambda q, k, v, core=core: gradients(core, q, k, v)).get_concrete_function(
        spec, spec, spec).graph.get_operations()) for core in (plain, attention_core)]
    assert ops[0] - ops[1] >= 20, ops  # two broadcast reductions of ~13 ops each


def test_only_plain_float32_self_attention_is_switched_and_files_stay_stock(tmp_path):
    assert use_fused_attention(_model(dropout=0.1)) == []  # Keras draws its own dropout mask
    assert use_fused_attention(_model(use_gate=True)) == []
    assert use_fused_attention(_model(output_shape=5)) == []
    assert switches_nothing_under("mixed_bfloat16", use_fused_attention, _model)
    assert fusable(_model().get_layer("attention"))

    stock, fused = _pair()
    loaded = switched_and_reloaded(fused, use_fused_attention, tmp_path / "model.keras")
    assert "call" not in vars(loaded.get_layer("attention"))
    x = np.random.default_rng(3).normal(size=(4, TOKENS, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=0, atol=1e-5)


@pytest.mark.slow  # a ViT train, ~8 s; by default test_only_plain_float32_self_attention_is_switched_and_files_stay_stock and test_vit.py's train
def test_train_switches_attention_without_dropout(tmp_path):
    """`train` makes the switch and says so (tiny_vit.yaml's attention dropout set to 0; with its
    dropout it is left to Keras: test_only_plain_float32_self_attention_is_switched...)."""
    from train_support import image_folder, invoke

    data = image_folder(tmp_path / "data", per_class=6)
    spec = Path(__file__).parent / "specs" / "tiny_vit.yaml"
    result = invoke("train", spec, "--data", data, "--epochs", "1", "--out", tmp_path / "run",
                    "--set", "stages.0.attention_dropout=0")
    assert result.exit_code == 0, result.output
    switched = result.output.split("fused kernels, the same math: ")[1].splitlines()[0]
    assert "2 attention" in switched and "5 layer norm" in switched, result.output
