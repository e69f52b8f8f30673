"""Kernel initializers: the spec's `defaults.kernel_initializer` as Keras initializer objects."""

from __future__ import annotations

import math

from archbuilder.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from archbuilder.keras.philox import tf1_random_uniform
from archbuilder.spec.initializer import InitializerSpec


@keras.saving.register_keras_serializable(package="archbuilder", name="GlorotUniformTF1")
class GlorotUniformTF1(keras.initializers.Initializer):
    """glorot_uniform(seed=s) exactly as TensorFlow 1 / Keras 2 drew it.

    limit = sqrt(6 / (fan_in + fan_out)), values uniform in [-limit, limit) from TF's Philox stream
    with the seed pair (87654321, seed). Every call starts the stream anew, as each TF 1 variable's
    initializer was a new kernel. The notebook's printed block outputs depend on these numbers.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(tuple(shape))
        # Keras 2's VarianceScaling(scale=1, mode="fan_avg", distribution="uniform").
        limit = math.sqrt(3.0 / max(1.0, (fan_in + fan_out) / 2.0))
        values = tf1_random_uniform(tuple(shape), -limit, limit, self.seed)
        return keras.ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {"seed": self.seed}


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """Keras 2's compute_fans: the receptive field scales both fans of a conv kernel."""
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = float(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


_KERAS_NAMES = {
    "glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform",
    "he_normal": "HeNormal", "lecun_uniform": "LecunUniform", "lecun_normal": "LecunNormal",
}


def make_initializer(spec: InitializerSpec) -> keras.initializers.Initializer:
    """A new initializer object for one layer.

    A new object per layer, as the notebook wrote `glorot_uniform(seed=0)` per layer: Keras 3
    warns when one seeded instance is reused, because each call of it then repeats its values.
    """
    if spec.type == "glorot_uniform_tf1":
        return GlorotUniformTF1(seed=spec.seed)
    return getattr(keras.initializers, _KERAS_NAMES[spec.type])(seed=spec.seed)


def make_portable(model: keras.Model) -> keras.Model:
    """Name only Keras's own initializers in `model`'s config, so plain Keras loads its files.

    A model's weights are drawn when it is built; afterwards its initializers are only what its
    saved config says about how they were made. `GlorotUniformTF1(seed)` becomes Keras's
    `GlorotUniform(seed)`: the same distribution (uniform in ±sqrt(6 / (fan_in + fan_out)), fans
    computed alike), drawn from Keras's stream instead of TF 1's. Loading a file restores the
    stored weights, so nothing that predicts changes; only re-initializing a layer from the file's
    config would draw other (equally distributed) numbers. Changes `model` in place and returns it.
    """
    for layer in _all_layers(model):
        for attribute, value in list(vars(layer).items()):
            if attribute.endswith("_initializer") and isinstance(value, GlorotUniformTF1):
                setattr(layer, attribute, keras.initializers.GlorotUniform(seed=value.seed))
    return model


def _all_layers(model):
    """Every layer, also those inside nested models (a functional model lists only its own)."""
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _all_layers(layer)
