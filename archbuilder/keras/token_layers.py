"""The Keras layers of the token primitives (archbuilder/layers/tokens.py) that Keras has no class of
its own for: a learned class token, learned position embeddings, self-attention called on one
tensor, and taking one token.

Each is registered for serialization as `archbuilder>Name`, so a `.keras` file holding them loads
with Keras's safe mode on wherever this module has been imported (archbuilder imports it before it
builds or opens a model). The primitives' factories find them through Keras's registry
(`keras.saving.get_registered_object`), so layers/ never imports this package.

Weights are laid out as keras-hub's ViT holds them (class token (1, 1, D), position embeddings
(N, D), the attention's query/key/value/output kernels as Keras's MultiHeadAttention), so its
weights map onto these layer for layer.
"""

from __future__ import annotations

from archbuilder.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
from keras import ops  # noqa: E402

_PACKAGE = "archbuilder"


@keras.saving.register_keras_serializable(package=_PACKAGE, name="ClassToken")
class ClassToken(keras.layers.Layer):
    """Prepends one learned token to a sequence: (batch, N, D) -> (batch, N + 1, D) (ViT's [class])."""

    def build(self, input_shape):
        # timm draws ViT's class token from N(0, 1e-6^2); training moves it.
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]),
                                     initializer=keras.initializers.RandomNormal(stddev=1e-6))

    def call(self, inputs):
        token = ops.cast(self.token, inputs.dtype)
        token = ops.broadcast_to(token, (ops.shape(inputs)[0], 1, ops.shape(token)[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])


@keras.saving.register_keras_serializable(package=_PACKAGE, name="PositionEmbedding")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position: (batch, N, D) + embeddings (N, D)."""

    def build(self, input_shape):
        # timm's and keras-hub's initial position embeddings: normal, standard deviation 0.02.
        self.embeddings = self.add_weight(name="embeddings", shape=(input_shape[1], input_shape[2]),
                                          initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, inputs):
        return inputs + ops.cast(self.embeddings, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=_PACKAGE, name="SelfAttention")
class SelfAttention(keras.layers.MultiHeadAttention):
    """Keras's MultiHeadAttention with query, key and value all the one input: `layer(x)` is
    `MultiHeadAttention(...)(x, x)`, the same weights and arithmetic. A model graph calls a
    layer on one tensor; this is that call."""

    def build(self, input_shape):
        super().build(input_shape, input_shape)

    def call(self, inputs, training=None):
        return super().call(inputs, inputs, training=training)

    def compute_output_shape(self, input_shape, value_shape=None, key_shape=None):
        # MultiHeadAttention's compute_output_spec calls this with (query, value, key) shapes.
        return super().compute_output_shape(input_shape, input_shape if value_shape is None else value_shape, key_shape)

    def compute_output_spec(self, inputs, training=None):
        return super().compute_output_spec(inputs, inputs)


@keras.saving.register_keras_serializable(package=_PACKAGE, name="TakeToken")
class TakeToken(keras.layers.Layer):
    """One token of a sequence: (batch, N, D) -> (batch, D) (ViT's head reads the class token, 0)."""

    def __init__(self, index: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[:, self.index]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self) -> dict:
        return {**super().get_config(), "index": self.index}
