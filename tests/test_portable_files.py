"""Model files written before configs were made portable (they name archbuilder's
GlorotUniformTF1) still load in archbuilder, with the same predictions."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from train_support import TINY_SPEC


def test_files_naming_archbuilders_initializer_still_load(tmp_path):
    from archbuilder.keras.graph import build_model
    from archbuilder.keras.model_files import open_model_file
    from archbuilder.plan.validate import load_checked_spec

    checked = load_checked_spec(TINY_SPEC, ["defaults.kernel_initializer={type: glorot_uniform_tf1, seed: 7}"])
    model = build_model(checked.spec, checked.plan)
    old = tmp_path / "old.keras"
    model.save(old)  # what build wrote before make_portable: Keras's save of the model as built
    assert "archbuilder>GlorotUniformTF1" in zipfile.ZipFile(old).read("config.json").decode()
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    loaded = open_model_file(old)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(loaded.get_layer("conv1").kernel_initializer).__name__ == "GlorotUniformTF1"


def test_make_portable_changes_the_config_not_the_weights():
    import keras

    from archbuilder.keras.graph import build_model
    from archbuilder.keras.initializers import make_portable
    from archbuilder.plan.validate import load_checked_spec

    checked = load_checked_spec(TINY_SPEC, ["defaults.kernel_initializer={type: glorot_uniform_tf1, seed: 7}"])
    model = build_model(checked.spec, checked.plan)
    before = [w.copy() for w in model.get_weights()]
    make_portable(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    initializer = model.get_layer("conv1").kernel_initializer
    assert type(initializer) is keras.initializers.GlorotUniform and initializer.seed == 7
    assert "archbuilder" not in str(model.get_config())


@pytest.mark.slow  # a real process; by default test_files_naming_archbuilders_initializer_still_load
def test_files_naming_archbuilders_old_layers_still_load(tmp_path):
    """Files written when drop path, layer scale and gelu_tanh were archbuilder's own Keras objects
    (before they were built from Keras's) name `archbuilder>DropPath`, `archbuilder>LayerScale`
    and `archbuilder>gelu_tanh`. `predict` in a fresh process, which imports nothing of the kind
    by itself, still loads them and gives the probabilities they give here."""
    import json

    import keras

    from archbuilder.keras.legacy_layers import DropPath, LayerScale, gelu_tanh
    from train_support import IMAGES, cli

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=4, name="conv")(inputs)
    x = LayerScale(init_values=0.5, name="scale")(x)
    x = DropPath(rate=0.2, name="drop")(x)
    x = keras.layers.Activation(gelu_tanh, name="gelu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="fc")(x)
    old = tmp_path / "old.keras"
    keras.Model(inputs, outputs).save(old)
    config = zipfile.ZipFile(old).read("config.json").decode()
    assert all(f"archbuilder>{name}" in config for name in ("DropPath", "LayerScale", "gelu_tanh"))

    photo = sorted((IMAGES / "1").iterdir())[0]
    process = cli("predict", old, photo, "--json")
    assert process.returncode == 0, process.stderr[-2000:]
    predicted = json.loads(process.stdout)["probabilities"]

    from archbuilder.data.images import load_image_files
    from archbuilder.keras.model_files import open_model_file

    x = load_image_files([photo], (32, 32, 3)).astype(np.float32) / np.float32(255.0)
    expected = np.asarray(open_model_file(old)(x, training=False))[0]
    # Same TensorFlow and kernels in both processes: threading's summation order at most.
    np.testing.assert_allclose([predicted[k] for k in sorted(predicted, key=int)], expected, rtol=0, atol=1e-6)
