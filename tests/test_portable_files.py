"""Model files written before configs were made portable (they name archbuilder's
GlorotUniformTF1) still load in archbuilder, with the same predictions."""

from __future__ import annotations

import zipfile

import numpy as np

from train_support import TINY_SPEC


def test_files_naming_archbuilders_initializer_still_load(tmp_path):
    from archbuilder.keras.graph import build_model
    from archbuilder.keras.model_files import open_model_file
    from archbuilder.spec.validate import load_checked_spec

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
    from archbuilder.spec.validate import load_checked_spec

    checked = load_checked_spec(TINY_SPEC, ["defaults.kernel_initializer={type: glorot_uniform_tf1, seed: 7}"])
    model = build_model(checked.spec, checked.plan)
    before = [w.copy() for w in model.get_weights()]
    make_portable(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    initializer = model.get_layer("conv1").kernel_initializer
    assert type(initializer) is keras.initializers.GlorotUniform and initializer.seed == 7
    assert "archbuilder" not in str(model.get_config())
