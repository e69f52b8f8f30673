"""The fused batch norm (archbuilder/training/fused_batch_norm.py) with PyTorch's epsilon, 1e-5: the
zoo's torch-convention networks (ResNeXt-50, SE-ResNet-50, ...) train with it on CPU (issue 21;
before, 1e-5 fell under the GPU's floor of 1.001e-5 and they ran Keras's ~76-op batch norm)."""

from __future__ import annotations

import numpy as np

from test_fused_batch_norm import _pair, _step
from train_support import REPO

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.keras.graph import build_model  # noqa: E402
from archbuilder.plan.validate import load_checked_spec  # noqa: E402
from archbuilder.training.fused_batch_norm import use_fused_batch_norm  # noqa: E402


def test_pytorchs_epsilon_computes_kerass_outputs_gradients_and_moving_statistics():
    assert not tf.config.list_logical_devices("GPU")  # the CPU floor applies (a GPU keeps 1.001e-5)
    stock, fused = _pair(epsilon=1e-5)
    rng = np.random.default_rng(2)
    x = (3.0 + 2.0 * rng.normal(size=(8, 5, 5, 3))).astype("float32")
    upstream = rng.normal(size=(8, 5, 5, 6)).astype("float32")
    names = ["outputs", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance"]
    for name, want, have in zip(names, _step(stock, x, upstream), _step(fused, x, upstream)):
        # the bound of test_fused_batch_norm.py (the same sums in other orders); epsilon is added
        # to a variance of ~4 either way, so it changes nothing in that bound
        np.testing.assert_allclose(have, want, rtol=0, atol=2e-5 * np.abs(want).max(), err_msg=name)


def test_every_batch_norm_of_a_torch_convention_zoo_network_is_fused():
    spec = load_checked_spec(REPO / "architectures" / "imagenet" / "seresnet50.yaml",
                             ["input.shape=[32, 32, 3]", "classes=10"]).spec
    model = build_model(spec)
    norms = [layer for layer in model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 53 and {layer.epsilon for layer in norms} == {1e-5}
    assert sorted(use_fused_batch_norm(model)) == sorted(layer.name for layer in norms)
