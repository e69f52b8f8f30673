"""Each primitive's static rule (archbuilder/layers) against Keras's own layer: output shape,
parameter count and trainable count. One row per primitive (several where options change the
count); a primitive without a row fails `test_every_primitive_has_a_row`."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.layers import BY_TYPE, PRIMITIVES, Context
from archbuilder.spec.initializer import InitializerSpec

import archbuilder.keras.graph  # noqa: F401  (sets TensorFlow's environment before Keras loads)
import keras  # noqa: E402
from archbuilder.keras.initializers import make_initializer  # noqa: E402
from keras.src.utils.naming import to_snake_case  # noqa: E402  (how Keras names unnamed layers)

# (layer as written in YAML, input shapes without the batch axis)
ROWS = [
    ({"type": "zero_padding", "padding": 3}, [(9, 7, 2)]),
    ({"type": "zero_padding", "padding": [[1, 2], [0, 3]]}, [(9, 7, 2)]),
    ({"type": "conv", "filters": 6, "kernel": [3, 5], "stride": 2}, [(17, 13, 4)]),
    ({"type": "conv", "filters": 6, "kernel": 3, "padding": "same", "groups": 2, "use_bias": False}, [(9, 9, 4)]),
    ({"type": "conv", "filters": 4, "kernel": 3, "dilation": 2}, [(11, 12, 3)]),
    ({"type": "depthwise_conv", "kernel": 3, "stride": 2, "padding": "same", "depth_multiplier": 2}, [(9, 8, 5)]),
    ({"type": "depthwise_conv", "kernel": 5, "use_bias": False}, [(9, 8, 5)]),
    ({"type": "separable_conv", "filters": 6, "kernel": 3, "stride": 2, "padding": "same", "depth_multiplier": 2},
     [(9, 8, 5)]),
    ({"type": "separable_conv", "filters": 4, "kernel": [3, 5], "dilation": 2, "use_bias": False}, [(13, 12, 3)]),
    ({"type": "conv_transpose", "filters": 6}, [(5, 4, 3)]),  # U-Net's 2x2 up-convolution
    ({"type": "conv_transpose", "filters": 4, "kernel": 3, "stride": 2}, [(5, 4, 3)]),  # valid: in*2 + 3 - 2
    ({"type": "conv_transpose", "filters": 4, "kernel": [1, 3], "stride": [3, 1]}, [(5, 4, 3)]),  # kernel < stride
    ({"type": "conv_transpose", "filters": 4, "kernel": 3, "stride": 2, "padding": "same", "use_bias": False},
     [(5, 4, 3)]),
    ({"type": "dense", "units": 7}, [(12,)]),
    ({"type": "dense", "units": 7, "use_bias": False}, [(3, 4, 12)]),  # last axis of any rank, as Keras
    ({"type": "batch_norm"}, [(5, 5, 6)]),
    ({"type": "batch_norm", "center": False, "scale": False}, [(6,)]),
    ({"type": "layer_norm", "epsilon": 1e-6}, [(5, 5, 6)]),
    *[({"type": "activation", "activation": a}, [(4, 4, 3)]) for a in
      ("relu", "relu6", "silu", "swish", "gelu", "gelu_tanh", "hard_swish", "hard_sigmoid", "sigmoid", "tanh",
       "softmax", "elu", "selu", "linear")],
    ({"type": "dropout", "rate": 0.2}, [(4, 4, 3)]),
    ({"type": "dropout", "rate": 0.2, "noise_shape": "per_sample"}, [(4, 4, 3)]),
    ({"type": "dropout", "rate": 0.2, "noise_shape": "per_sample"}, [(12,)]),
    ({"type": "drop_path", "rate": 0.1}, [(4, 4, 3)]),
    ({"type": "drop_path", "rate": 0.1}, [(5, 12)]),
    ({"type": "max_pool", "pool": 3, "stride": 2}, [(15, 14, 3)]),
    ({"type": "max_pool", "pool": 3, "stride": 2, "padding": "same"}, [(15, 14, 3)]),
    ({"type": "average_pool", "pool": [2, 3]}, [(15, 14, 3)]),
    ({"type": "global_average_pool"}, [(5, 4, 3)]),
    ({"type": "global_average_pool", "keepdims": True}, [(5, 4, 3)]),
    ({"type": "global_max_pool", "keepdims": True}, [(5, 4, 3)]),
    ({"type": "cropping", "cropping": 1}, [(9, 7, 2)]),
    ({"type": "cropping", "cropping": [[1, 2], [0, 3]]}, [(9, 7, 2)]),
    ({"type": "cropping"}, [(9, 7, 2), (4, 4, 5)]),  # to the second input's size, about the centre
    ({"type": "upsample", "size": 2}, [(5, 4, 3)]),
    ({"type": "upsample", "size": [2, 3], "interpolation": "bilinear"}, [(5, 4, 3)]),
    ({"type": "resize", "size": [7, 9]}, [(5, 4, 3)]),
    ({"type": "resize", "size": 3, "interpolation": "nearest"}, [(5, 4, 3)]),
    ({"type": "resize"}, [(5, 4, 3), (9, 7, 2)]),  # to the second input's height and width
    ({"type": "flatten"}, [(5, 4, 3)]),
    ({"type": "reshape", "shape": [1, 1, -1]}, [(12,)]),
    ({"type": "add"}, [(4, 4, 3), (4, 4, 3), (4, 4, 3)]),
    ({"type": "concat"}, [(4, 4, 3), (4, 4, 5)]),
    ({"type": "concat", "axis": 1}, [(6, 4), (9, 4), (2, 4)]),  # a detector's per-level anchors joined
    ({"type": "concat", "axis": -2}, [(4, 5, 3), (4, 2, 3)]),
    ({"type": "multiply"}, [(4, 4, 3), (1, 1, 3)]),  # squeeze-excitation's broadcast
    ({"type": "layer_scale", "init": 1e-6}, [(4, 4, 7)]),
    ({"type": "rescaling", "scale": 0.5, "offset": -1}, [(4, 4, 3)]),
    ({"type": "normalization"}, [(4, 4, 3)]),  # mean and variance held as weights, plus a count
    ({"type": "normalization", "mean": [0.5, 0.4, 0.3], "variance": [0.1, 0.2, 0.3]}, [(4, 4, 3)]),
    ({"type": "reshape", "shape": [-1, 3]}, [(4, 5, 3)]),  # an image's pixels as tokens (a ViT's patches)
    ({"type": "class_token"}, [(5, 6)]),
    ({"type": "position_embedding"}, [(5, 6)]),
    ({"type": "multi_head_attention", "num_heads": 2}, [(5, 6)]),  # key_dim 6 / 2, as ViT
    ({"type": "multi_head_attention", "num_heads": 3, "key_dim": 4, "dropout": 0.1, "use_bias": False}, [(5, 6)]),
    ({"type": "take_token"}, [(5, 6)]),
    ({"type": "take_token", "index": 4}, [(5, 6)]),
    ({"type": "average_tokens"}, [(5, 6)]),
]
# The primitives whose Keras layer is archbuilder's own (registered as `archbuilder>...`): Keras has no
# class-token, position-embedding or take-one-token layer, and its MultiHeadAttention is called on
# two tensors where a model graph calls a layer on one. Their files need archbuilder to load.
ARCHBUILDER_LAYERS = {"class_token", "position_embedding", "multi_head_attention", "take_token"}
CONTEXT = Context(use_bias=True, kernel_initializer=InitializerSpec(type="glorot_uniform", seed=1),
                  make_initializer=make_initializer)


def test_every_primitive_has_a_row():
    assert {row[0]["type"] for row in ROWS} == set(BY_TYPE) == {cls.type_name() for cls in PRIMITIVES}


@pytest.mark.parametrize("data, shapes", ROWS, ids=[f"{r[0]['type']}-{i}" for i, r in enumerate(ROWS)])
def test_static_rule_equals_keras(data, shapes):
    layer = BY_TYPE[data["type"]].model_validate(data)
    stats = layer.infer(list(shapes), CONTEXT)
    built = layer.keras(CONTEXT, "under_test", list(shapes))
    inputs = layer.keras_inputs([keras.Input(shape=s) for s in shapes])
    output = built(inputs if layer.merge else inputs[0])
    trainable = sum(int(np.prod(w.shape)) for w in built.trainable_weights)
    assert tuple(output.shape[1:]) == stats.out_shape
    assert (built.count_params(), trainable) == (stats.params, stats.trainable)
    # The automatic name Keras gives this class, which unnamed layers of a plan are numbered by.
    assert to_snake_case(type(built).__name__) == layer.keras_base_name


def test_keras_layers_of_every_primitive_compute_on_real_values():
    """The layers made of Keras pieces to mean something else (drop path, layer scale, gelu_tanh)
    compute what they say."""
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype("float32")
    shapes = [x.shape[1:]]
    drop = BY_TYPE["drop_path"](type="drop_path", rate=0.5).keras(CONTEXT, "dp", shapes)
    np.testing.assert_array_equal(np.asarray(drop(x, training=False)), x)
    dropped = np.asarray(drop(x, training=True))
    per_sample = [np.all(d == 0) or np.allclose(d, 2 * s) for d, s in zip(dropped, x)]  # kept ones scaled by 1/(1-p)
    assert all(per_sample)
    scale = BY_TYPE["layer_scale"](type="layer_scale", init=0.25).keras(CONTEXT, "ls", shapes)
    np.testing.assert_allclose(np.asarray(scale(x)), 0.25 * x, rtol=1e-6)
    gelu = BY_TYPE["activation"](type="activation", activation="gelu_tanh").keras(CONTEXT, "g", shapes)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(np.asarray(gelu(x)), expected, rtol=1e-5, atol=1e-6)  # float32 tanh rounding


def test_token_layers_compute_what_they_say():
    """archbuilder's own token layers (archbuilder/keras/token_layers.py) against NumPy and against
    Keras's MultiHeadAttention called as (x, x) with the same weights."""
    x = np.random.default_rng(1).normal(size=(3, 5, 6)).astype("float32")
    shapes = [x.shape[1:]]
    cls = BY_TYPE["class_token"](type="class_token").keras(CONTEXT, "cls", shapes)
    out = np.asarray(cls(x))
    token = np.asarray(cls.token)
    np.testing.assert_array_equal(out[:, 1:], x)
    np.testing.assert_array_equal(out[:, :1], np.broadcast_to(token, (3, 1, 6)))
    pos = BY_TYPE["position_embedding"](type="position_embedding").keras(CONTEXT, "pos", shapes)
    np.testing.assert_array_equal(np.asarray(pos(x)), x + np.asarray(pos.embeddings))
    take = BY_TYPE["take_token"](type="take_token", index=2).keras(CONTEXT, "take", shapes)
    np.testing.assert_array_equal(np.asarray(take(x)), x[:, 2])
    ours = BY_TYPE["multi_head_attention"](type="multi_head_attention", num_heads=2).keras(CONTEXT, "mha", shapes)
    mine = np.asarray(ours(x))
    stock = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    stock(x, x)
    stock.set_weights(ours.get_weights())
    np.testing.assert_array_equal(mine, np.asarray(stock(x, x)))  # the same layer's call, the same ops


def test_every_primitive_saves_a_file_that_plain_keras_loads(tmp_path):
    """Issue 11: every model file loads in plain Keras, so every primitive must build only Keras's
    own objects. One file per row, written by archbuilder's own save path, then loaded and run in
    a Python where archbuilder cannot be imported. The exceptions are the token layers Keras has no
    class for (ARCHBUILDER_LAYERS, archbuilder/keras/token_layers.py): their files load, in safe
    mode, where archbuilder's model files are opened."""
    import zipfile

    from plain_keras import predict_in_plain_keras

    from archbuilder.keras.model_files import open_model_file, save_model_file

    rng = np.random.default_rng(0)
    models, expected, own = [], [], set()
    for index, (data, shapes) in enumerate(ROWS):
        model = _one_layer_model(data, shapes)
        path = tmp_path / f"row{index}.keras"
        save_model_file(model, path, {"class_names": []})
        config = zipfile.ZipFile(path).read("config.json").decode()
        x = _keras_inputs(data, [rng.normal(size=(2, *s)).astype("float32") for s in shapes])
        want = np.asarray(model(x if len(x) > 1 else x[0], training=False))
        if data["type"] in ARCHBUILDER_LAYERS:
            own.add(data["type"])
            assert '"module": "archbuilder' in config, data
            got = np.asarray(open_model_file(path)(x[0], training=False))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=str(data))  # as below
            continue
        assert "archbuilder" not in config, (data, config)
        models.append((path, x))
        expected.append(want)
    assert own == ARCHBUILDER_LAYERS
    portable = [row for row in ROWS if row[0]["type"] not in ARCHBUILDER_LAYERS]
    for (data, _), got, want in zip(portable, predict_in_plain_keras(models, tmp_path), expected):
        # Same TensorFlow and kernels on the same float32 values; one layer, so only threading's
        # summation order can differ: a few ulps of outputs of order 1.
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=str(data))


def test_every_primitive_saves_an_h5_that_keras2_rebuilds_or_is_named(tmp_path):
    """Issue 13's `.h5` files: tf_keras (Keras 2) rebuilds every primitive's file and computes what
    Keras 3 does, or the layer is one Keras 2 has no form of, and the note printed beside the file
    (`keras2_note`) names it."""
    import tf_keras

    from archbuilder.keras.weights_h5 import keras2_note, save_h5

    rng = np.random.default_rng(0)
    for index, (data, shapes) in enumerate(ROWS):
        model = _one_layer_model(data, shapes)
        path = save_h5(model, tmp_path / f"row{index}.h5")
        x = _keras_inputs(data, [rng.normal(size=(2, *s)).astype("float32") for s in shapes])
        x = x if len(x) > 1 else x[0]
        want = np.asarray(model(x, training=False))
        try:
            got = np.asarray(tf_keras.models.load_model(path, compile=False)(x, training=False))
        except (ValueError, TypeError):  # tf_keras: "Unknown layer", "Unknown activation function"
            got = None
        # The same weights through Keras 2's layer, which calls the same TensorFlow ops or (batch
        # and layer norm) a fused kernel with the same formula: float32 rounding of outputs of
        # order 1, a few ulps.
        atol = 1e-5
        note = keras2_note(model, path)
        if note is None:
            assert got is not None, data
            np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=str(data))
        else:  # named because Keras 2 fails to load it or computes something else
            assert "under_test" in note, (data, note)
            assert got is None or not np.allclose(got, want, rtol=0, atol=atol), (data, "Keras 2 rebuilds it")


def _one_layer_model(data: dict, shapes: list) -> "keras.Model":
    """A model of one primitive (as written in YAML) on inputs of `shapes`, built by archbuilder."""
    layer = BY_TYPE[data["type"]].model_validate(data)
    inputs = layer.keras_inputs([keras.Input(shape=s) for s in shapes])
    inputs = inputs if layer.merge else inputs[0]
    return keras.Model(inputs, layer.keras(CONTEXT, "under_test", list(shapes))(inputs))


def _keras_inputs(data: dict, values: list) -> list:
    """The values the row's Keras layer is called on (`resize` to another map's size reads only its shape)."""
    return BY_TYPE[data["type"]].model_validate(data).keras_inputs(values)
