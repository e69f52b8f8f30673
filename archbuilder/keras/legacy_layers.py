"""Layers that older archbuilder files name, kept registered so those files still load (safe mode).

Models are now built from Keras's own classes only (drop path is a per-sample `Dropout`,
layer scale keras.applications' `LayerScale`, gelu_tanh an `Activation` of Keras's `Gelu`
operation), so new files load in plain Keras. Files written before that name
`archbuilder>DropPath`, `archbuilder>LayerScale` and `archbuilder>gelu_tanh`; `open_model_file`
imports this module so they load in archbuilder as before. Nothing here is used to build."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="archbuilder", name="gelu_tanh")
def gelu_tanh(x):
    """GELU by its tanh approximation (Hendrycks & Gimpel), as `gelu(approximate=True)`."""
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="archbuilder", name="DropPath")
class DropPath(keras.layers.Layer):
    """Drops a sample's whole input with probability `rate` in training and scales the kept
    samples by 1 / (1 - rate) (timm's DropPath); an identity in inference."""

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (keras.ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        mask = keras.ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype))
        return inputs / keep * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="archbuilder", name="LayerScale")
class LayerScale(keras.layers.Layer):
    """x * gamma with a learnable per-channel gamma initialized to `init_values` (ConvNeXt)."""

    def __init__(self, init_values: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_values = float(init_values)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma", shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.init_values),
            trainable=True,
        )

    def call(self, inputs):
        return inputs * keras.ops.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "init_values": self.init_values}
