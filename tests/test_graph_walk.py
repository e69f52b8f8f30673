"""Keras's functional graph sorted without recursion (archbuilder/keras/graph_walk.py): the same
order as Keras's recursive search, and models deeper than Python's frame limit build, save,
load and predict."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import archbuilder
from archbuilder.keras import graph_walk
from archbuilder.keras.graph import build_model
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO

from keras.src.ops import function as keras_function  # noqa: E402  (after archbuilder set TF's environment)

SPECS = [REPO / "architectures" / "resnet50.yaml", REPO / "architectures" / "segmentation" / "unet.yaml",
         REPO / "architectures" / "detection" / "retinanet_resnet50.yaml",
         *(REPO / "tests" / "specs" / name for name in ("shared_heads.yaml", "two_outputs.yaml", "tiny_vit.yaml"))]


@pytest.mark.parametrize("spec", SPECS, ids=lambda path: path.stem)
def test_the_walk_gives_keras_s_own_order(spec, monkeypatch):
    # Skips (U-Net), several outputs (the detector, two_outputs), shared layers (shared_heads).
    model = build_model(load_checked_spec(spec).spec)
    ours = keras_function._build_map(model.inputs, model.outputs)
    monkeypatch.setattr(keras_function, "_build_map_helper", graph_walk._KERAS_HELPER)
    theirs = keras_function._build_map(model.inputs, model.outputs)
    assert ours[0] == theirs[0] and len(ours[0]) >= len(model.layers)  # the same node objects, in order
    assert list(ours[1].items()) == list(theirs[1].items())


def test_a_model_deeper_than_python_s_frame_limit_builds_saves_loads_and_predicts(tmp_path):
    # 150 blocks of the tiny spec: 1,058 layers in a chain. Each raised RecursionError (Keras's
    # search recursed once per layer) under the default limit of 1,000 frames, which stays as is.
    assert sys.getrecursionlimit() <= 1000
    model = archbuilder.build(REPO / "tests" / "specs" / "tiny_train.yaml", ["stages.0.repeats=150"])
    assert len(model.layers) > 1000
    path = archbuilder.api.save(model, tmp_path / "deep.keras")
    images = np.random.default_rng(0).integers(0, 256, (2, *model.input_shape[1:]), np.uint8)
    predicted = archbuilder.predict(path, images)
    expected = model.predict(images / np.float32(255), verbose=0)
    np.testing.assert_array_equal(predicted.probabilities, expected)  # the same model, the same kernels
