"""Elementwise layers: activation, dropout and drop path (stochastic depth)."""

from __future__ import annotations

from typing import Literal

from archbuilder.layers.base import LayerStats, Primitive, Rate, single

Activation = Literal[
    "relu", "relu6", "silu", "swish", "gelu", "gelu_tanh", "hard_swish", "hard_sigmoid", "sigmoid", "tanh",
    "softmax", "elu", "selu", "linear",
]


def float32_if_softmax(name: str) -> str | None:
    """A softmax computes in float32 under a mixed-precision policy (in 16 bits exp overflows and
    probabilities round); None leaves every other layer, and a softmax under a float32 or float64
    policy, to the global dtype policy (pinning it to float32 there would round a float64 model)."""
    import keras

    mixed = keras.config.dtype_policy().compute_dtype in ("float16", "bfloat16")
    return "float32" if name == "softmax" and mixed else None


def keras_activation(name: str):
    """Keras's activation for a name. `gelu` is the exact (erf) form, `gelu_tanh` the tanh
    approximation; `hard_sigmoid` is Keras 3's relu6(x + 3) / 6, as MobileNetV3 uses."""
    import keras

    if name == "gelu_tanh":
        # Keras's activation functions have no tanh form of GELU, but its `Gelu` operation does.
        # An Activation holding that object saves it as {module: keras.src.ops.nn, class: Gelu,
        # approximate: true}, which plain Keras rebuilds in safe mode (its own module).
        from keras.src.ops.nn import Gelu

        return Gelu(approximate=True)
    return {"hard_swish": keras.activations.hard_silu}.get(name, name)


def per_sample_noise(shape) -> tuple:
    """Dropout's noise shape that drops a sample's whole tensor: (None, 1, ..., 1) at its rank."""
    return (None,) + (1,) * len(shape)


class ActivationLayer(Primitive):
    type: Literal["activation"]
    activation: Activation = "relu"
    keras_base_name = "activation"

    def infer(self, inputs, ctx):
        return LayerStats(single(self, inputs))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.Activation(keras_activation(self.activation), dtype=float32_if_softmax(self.activation),
                                       name=name)


class DropoutLayer(Primitive):
    """Dropout; `noise_shape: per_sample` drops whole samples' feature maps, (None, 1, 1, 1)."""

    type: Literal["dropout"]
    rate: Rate = 0.5
    noise_shape: Literal["per_sample"] | None = None
    keras_base_name = "dropout"

    def infer(self, inputs, ctx):
        return LayerStats(single(self, inputs))

    def keras(self, ctx, name, inputs):
        import keras

        noise = per_sample_noise(single(self, inputs)) if self.noise_shape == "per_sample" else None
        return keras.layers.Dropout(self.rate, noise_shape=noise, name=name)


class DropPathLayer(Primitive):
    """Stochastic depth: in training, drops a sample's whole residual branch with probability
    `rate` and scales the kept ones by 1 / (1 - rate), as timm's DropPath; an identity in inference.
    `rate: drop_path` takes the block's share of the network's `drop_path_rate`."""

    type: Literal["drop_path"]
    rate: Rate = "drop_path"
    keras_base_name = "dropout"

    def infer(self, inputs, ctx):
        return LayerStats(single(self, inputs))

    def keras(self, ctx, name, inputs):
        import keras

        # timm's drop_path is dropout whose noise covers a whole sample: Keras's Dropout keeps each
        # sample's tensor with probability 1 - rate and scales it by 1 / (1 - rate), which is the
        # same function, and is a class plain Keras loads.
        return keras.layers.Dropout(self.rate, noise_shape=per_sample_noise(single(self, inputs)), name=name)
