"""Winograd F(2x2, 3x3) convolutions (archbuilder/training/winograd_conv.py, winograd_choice.py):
outputs and both gradients within Winograd's own rounding bound of the exact sums, only on the
candidate layers, chosen by timing once per machine and shape, and no trace in model files."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import tensorflow as tf

from archbuilder.keras.graph import build_model  # noqa: I001  (sets TensorFlow's environment first)
from archbuilder.plan.validate import load_checked_spec
from archbuilder.training.kernel_choice import cache_path, machine_key, read_shapes
from archbuilder.training.timed_switch import CACHE_FORMAT, TimingBudget
from archbuilder.training.winograd_choice import (
    CACHE_NAME, MAX_LAYERS, WINOGRAD, choose_winograd, switch_winograd, switch_winograd_where_faster,
)
from archbuilder.training.winograd_conv import AT, BT, G, MAX_MAP, candidate, winograd_convolution
from switched_layers import cache_decisions, gamma, training_graph
from train_support import REPO

import keras  # noqa: E402


def _tiles(x, pad):
    """[N, H, W, C] float64 -> [N, h/2, w/2, 4, 4, C]: the 4x4 input tiles every 2 of x padded by `pad`."""
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    rows, columns = (x.shape[1] - 2) // 2, (x.shape[2] - 2) // 2
    return np.stack([np.stack([x[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4] for j in range(columns)], 1)
                     for i in range(rows)], 1)


def _untile(tiles, shape, pad):
    """The transpose of _tiles: tiles added back where they came from, the padding cut off."""
    n, height, width, channels = shape
    full = np.zeros((n, height + 2 * pad, width + 2 * pad, channels))
    for i in range(tiles.shape[1]):
        for j in range(tiles.shape[2]):
            full[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += tiles[:, i, j]
    return full[:, pad:pad + height, pad:pad + width]


def _magnitudes(x, kernel, upstream, pad):
    """In float64, the sums of the magnitudes of every term of each output, input gradient and
    kernel gradient that F(2x2, 3x3) adds: its three stages with |B^T|, |G|, |A^T| and |values|."""
    bt, g, at = (np.abs(np.array(m, np.float64)) for m in (BT, G, AT))
    x, kernel, upstream = np.abs(x), np.abs(kernel), np.abs(upstream)
    n, height, width, filters = upstream.shape
    v = np.einsum("ka,nijabc,lb->nijklc", bt, _tiles(x, pad), bt)  # |B^T| |d| |B|
    u = np.einsum("ka,abcf,lb->klcf", g, kernel, g)  # |G| |g| |G^T|
    m = np.einsum("nijklc,klcf->nijklf", v, u)
    outputs = np.einsum("pk,nijklf,ql->nipjqf", at, m, at).reshape(n, height, width, filters)
    blocks = upstream.reshape(n, height // 2, 2, width // 2, 2, filters)
    dm = np.einsum("pk,nipjqf,ql->nijklf", at, blocks, at)  # |A| |dY| |A^T|
    dv = np.einsum("nijklf,klcf->nijklc", dm, u)
    input_gradient = _untile(np.einsum("ka,nijklc,lb->nijabc", bt, dv, bt), x.shape, pad)
    du = np.einsum("nijklc,nijklf->klcf", v, dm)
    kernel_gradient = np.einsum("ka,klcf,lb->abcf", g, du, g)
    return outputs, input_gradient, kernel_gradient


def _exact(x, kernel, upstream, padding):
    """Output and both gradients of TensorFlow's float64 convolution: exact to ~1e-16, far below
    the float32 bounds checked against it."""
    x64, kernel64 = tf.constant(x, tf.float64), tf.constant(kernel, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([x64, kernel64])
        y = tf.nn.conv2d(x64, kernel64, 1, padding)
    gradients = tape.gradient(y, [x64, kernel64], output_gradients=tf.constant(upstream, tf.float64))
    return [y.numpy(), *(t.numpy() for t in gradients)]


@pytest.mark.parametrize("shape, padding", [((2, 6, 8, 16), "SAME"), ((3, 8, 6, 16), "VALID"), ((1, 4, 4, 5), "SAME")])
def test_outputs_and_gradients_within_winograds_bound_of_the_exact_sums(shape, padding):
    rng = np.random.default_rng(1)
    channels, filters = shape[-1], 8
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(3, 3, channels, filters)).astype("float32")
    pad = 1 if padding == "SAME" else 0
    out_shape = (shape[0], shape[1] + 2 * pad - 2, shape[2] + 2 * pad - 2, filters)
    upstream = rng.normal(size=out_shape).astype("float32")
    xt, kt = tf.constant(x), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = winograd_convolution(xt, kt, padding)
    got = [y.numpy(), *(t.numpy() for t in tape.gradient(y, [xt, kt], output_gradients=upstream))]
    exact = _exact(x, kernel, upstream, padding)
    # Roundings each product term can meet, counted along the computation (winograd_conv.py):
    # outputs: B^T d B (2 stages of 1 addition), G g G^T (2 stages of 2; the 1/2 scalings are
    # exact), the product and the sum over C channels (C), A^T m A (2 stages of 2): C + 10.
    # Input gradient: A dY A^T (2 x 1), G g G^T (4), products summed over F filters (F), the
    # transposed input transform (2 stages of 2) and the overlapping tiles (2 x 1): F + 12.
    # Kernel gradient: B^T d B (2), A dY A^T (2), products summed over P tiles (P), G^T du G
    # (2 stages of 2): P + 8.
    tiles = out_shape[0] * out_shape[1] * out_shape[2] // 4
    roundings = [channels + 10, filters + 12, tiles + 8]
    for name, have, want, magnitude, n in zip(("outputs", "input gradient", "kernel gradient"), got, exact,
                                              _magnitudes(x, kernel, upstream, pad), roundings):
        assert have.shape == want.shape, name
        bound = gamma(n) * magnitude
        excess = np.abs(have - want) - bound
        assert excess.max() <= 0, f"{name}: {excess.max():.3g} over Winograd's bound"
        # Not vacuous: the bound is a few float32 ulps of the values, not of the magnitudes' scale.
        assert bound.max() < 1e-4 * np.abs(want).max(), name


def _candidates_model(dtype="float32"):
    inputs = keras.Input((8, 8, 256))
    x = keras.layers.Conv2D(256, 3, padding="same", name="same_8x8", dtype=dtype)(inputs)
    x = keras.layers.ZeroPadding2D(1, dtype=dtype)(x)
    x = keras.layers.Conv2D(256, 3, name="valid_10x10", dtype=dtype)(x)  # PyTorch-style: padded, then valid
    x = keras.layers.Conv2D(256, 3, padding="same", dilation_rate=2, name="dilated", dtype=dtype)(x)
    x = keras.layers.Conv2D(256, 3, padding="same", groups=2, name="grouped", dtype=dtype)(x)
    x = keras.layers.Conv2D(128, 3, padding="same", name="narrow", dtype=dtype)(x)
    x = keras.layers.Conv2D(256, 3, padding="same", name="from_narrow", dtype=dtype)(x)  # 128 channels in
    x = keras.layers.Conv2D(256, 1, name="pointwise", dtype=dtype)(x)
    x = keras.layers.Conv2D(256, 3, padding="valid", name="valid_8x8", dtype=dtype)(x)  # 6x6 out: even
    x = keras.layers.Conv2D(256, 3, strides=2, padding="same", name="strided", dtype=dtype)(x)  # 3x3 out
    x = keras.layers.Conv2D(256, 3, padding="same", name="odd_3x3", dtype=dtype)(x)
    x = keras.layers.GlobalAveragePooling2D(dtype=dtype)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc", dtype=dtype)(x))


def test_only_3x3_stride_1_float32_convolutions_with_wide_even_maps_are_candidates():
    model = _candidates_model()
    assert [layer.name for layer in model.layers if candidate(layer)] == ["same_8x8", "valid_10x10", "valid_8x8"]
    assert not any(candidate(layer) for layer in _candidates_model("bfloat16").layers)
    # Maps up to MAX_MAP: larger ones cost first-step seconds a layer (winograd_conv.py).
    for size, expected in ((MAX_MAP, True), (MAX_MAP + 2, False)):
        inputs = keras.Input((size, size, 256))
        model = keras.Model(inputs, keras.layers.Conv2D(256, 3, padding="same")(inputs))
        assert candidate(model.layers[-1]) is expected, size


def _stack(count: int):
    """`count` candidate convolutions in a row (4x4x256)."""
    inputs = x = keras.Input((4, 4, 256))
    for index in range(count):
        x = keras.layers.Conv2D(256, 3, padding="same", name=f"conv{index}")(x)
    return keras.Model(inputs, x)


def test_at_most_max_layers_switch_the_first_in_order_and_train_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    model = _stack(MAX_LAYERS + 2)
    cache_decisions(WINOGRAD, True, model, batch_size=4)
    messages = []
    choice = switch_winograd_where_faster(model, 4, messages.append)
    assert choice.switched == [f"conv{index}" for index in range(MAX_LAYERS)]
    assert choice.kept == [f"conv{MAX_LAYERS}", f"conv{MAX_LAYERS + 1}"]
    assert [layer.name for layer in model.layers if "convolution_op" in vars(layer)] == choice.switched
    assert len(messages) == 1 and f"Winograd F(2x2, 3x3) for {MAX_LAYERS} convolution(s)" in messages[0]
    assert f"2 more keep TensorFlow's: at most {MAX_LAYERS} layers switch" in messages[0]


def test_a_switched_model_trains_with_batched_products_and_keeps_its_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 256)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 4), 3)
    stock, fast = _candidates_model(), _candidates_model()
    fast.set_weights(stock.get_weights())
    config = fast.get_config()
    assert switch_winograd(fast, {"same_8x8", "valid_10x10", "strided"}) == ["same_8x8", "valid_10x10"]
    assert fast.get_config() == config
    # Each Winograd layer: one batched product (its 16 products) forward, two backward, and one
    # Conv2D fewer.
    stock_ops, fast_ops = (collections.Counter(op.type for op in training_graph(model, (8, 8, 256)).get_operations())
                           for model in (stock, fast))
    assert (stock_ops["BatchMatMulV2"], fast_ops["BatchMatMulV2"]) == (0, 6)
    assert stock_ops["Conv2D"] - fast_ops["Conv2D"] == 2
    for model in (stock, fast):
        model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    # Three Winograd layers deep the outputs agree to float32 rounding, not bit for bit.
    want, have = stock.predict_on_batch(x), fast.predict_on_batch(x)
    np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert fast.train_on_batch(x, y) > 0
    fast.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert not any("convolution_op" in vars(layer) for layer in loaded.layers)


def test_the_backward_pass_recomputes_v_only_once_the_upstream_gradient_exists():
    """V, the transformed input tiles (4x the input), is recomputed for the kernel gradient rather
    than kept. With the layer's input its only operand, TensorFlow's executor would run that
    recomputation as soon as the input exists, in the forward pass, and hold every layer's V until
    the backward pass: 0.3 GiB more at the peak for ResNet-152's 12 switched layers at batch 32
    (bench/RESULTS.md, ninth session). So each layer's second input_tiles call must wait for a
    gradient op; its first, the forward pass's, for none."""
    model = _candidates_model()
    switch_winograd(model, {"same_8x8", "valid_10x10"})
    graph = training_graph(model, (8, 8, 256))

    def calls(op, function: str) -> bool:
        return op.type in ("PartitionedCall", "StatefulPartitionedCall") and function in op.get_attr("f").name

    def waits_for_a_gradient(op) -> bool:
        seen, stack = set(), list(op.control_inputs) + [t.op for t in op.inputs]
        while stack:
            other = stack.pop()
            if other.name in seen:
                continue
            seen.add(other.name)
            if other.name.startswith("gradient_tape/") and not calls(other, "input_tiles"):
                return True
            stack += list(other.control_inputs) + [t.op for t in other.inputs]
        return False

    tiles = [op for op in graph.get_operations()
             if calls(op, "input_tiles") and "transposed" not in op.get_attr("f").name]
    assert sorted(waits_for_a_gradient(op) for op in tiles) == [False, False, True, True]


def test_the_zoos_resnet34_switches_its_14x14x256_convolutions():
    model = build_model(load_checked_spec(REPO / "architectures" / "imagenet" / "resnet34.yaml").spec)
    names = [layer.name for layer in model.layers if candidate(layer)]
    assert len(names) == 11 and all(name.startswith("res4") for name in names)
    assert {layer.input.shape[1:] for layer in model.layers if layer.name in names} == {(14, 14, 256)}



def test_the_choice_is_timed_once_per_machine_and_shape_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    # Winograd's timing is not budgeted (its layers are capped): a spent budget times it all.
    first = choose_winograd(_candidates_model(), batch_size=2, budget=TimingBudget(0.0))
    # Three candidates, three shapes (8x8 same, 10x10 valid, 8x8 valid), each timed both ways.
    assert sorted(first.switched + first.kept) == ["same_8x8", "valid_10x10", "valid_8x8"]
    assert len(first.measured) == 3 and first.cache == cache_path(name=CACHE_NAME) and first.cached
    for entry in first.timings.values():
        ms = entry["ms"]
        assert ms["keras"] > 0 and ms["winograd"] > 0 and entry["switch"] == (ms["winograd"] <= 0.9 * ms["keras"])
    assert read_shapes(first.cache, machine_key(), CACHE_FORMAT, lambda entry: True) == first.timings
    again = choose_winograd(_candidates_model(), batch_size=2)
    assert again.measured == [] and again.switched == first.switched


@pytest.mark.parametrize("damage", ["garbage", "foreign machine", "bad entry"])
def test_a_corrupt_or_foreign_cache_is_timed_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    model = _candidates_model()
    path = cache_path(name=CACHE_NAME)
    cache_decisions(WINOGRAD, False, model, batch_size=2)
    assert choose_winograd(model, batch_size=2).measured == []  # intact: nothing timed
    data = json.loads(path.read_text())
    if damage == "garbage":
        path.write_bytes(b"\xff{not json")
    else:
        if damage == "foreign machine":
            data["machine"]["tensorflow"] = "0.0.0"
        else:
            next(iter(data["shapes"].values()))["ms"]["winograd"] = "fast"
        path.write_text(json.dumps(data))
    assert len(choose_winograd(model, batch_size=2).measured) == 3


@pytest.mark.parametrize("switch", [True, False])
def test_train_switches_what_the_cache_says_and_says_why(tmp_path, monkeypatch, switch):
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    model = _candidates_model()
    cache_decisions(WINOGRAD, switch, model, batch_size=4)
    messages = []
    choice = switch_winograd_where_faster(model, 4, messages.append)
    switched = [layer.name for layer in model.layers if "convolution_op" in vars(layer)]
    assert switched == (["same_8x8", "valid_10x10", "valid_8x8"] if switch else []) == choice.switched
    assert not any("timing" in message for message in messages)
    said = "Winograd F(2x2, 3x3) for 1 convolution(s)" if switch else "Winograd F(2x2, 3x3) did not pay here"
    assert sum(said in message and "timed earlier on this CPU" in message for message in messages) == 3
