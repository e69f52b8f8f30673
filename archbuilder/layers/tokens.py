"""Layers on sequences of tokens, shape (N, D) without the batch axis: class_token,
position_embedding, multi_head_attention, take_token and average_tokens (a Vision Transformer's).

Image to tokens is two layers that exist already: a `conv` whose kernel and stride are the patch
size, then `reshape` to `[-1, D]` (keras-hub's and timm's patch embedding is that convolution).
`layer_norm` and `dense` act on the last axis of any rank, so the rest of a transformer block is
those and `add`.

class_token, position_embedding, multi_head_attention and take_token build small Keras layers of
archbuilder's (archbuilder/keras/token_layers.py, registered as `archbuilder>Name`), found through
Keras's registry so that this module stays free of TensorFlow; average_tokens is Keras's own.
"""

from __future__ import annotations

from typing import Literal

from archbuilder.layers.base import LayerStats, NonNegInt, PosInt, Primitive, Rate, Shape, ShapeError, single


def tokens(layer: Primitive, inputs: list[Shape]) -> Shape:
    """The one input, which must be a sequence of tokens (N, D)."""
    shape = single(layer, inputs)
    if len(shape) != 2:
        raise ShapeError(f"{layer.describe()} needs a sequence of tokens (tokens, channels); received shape {shape}; "
                         "an image becomes tokens by `reshape` to [-1, channels]")
    return shape


def _registered(name: str):
    """archbuilder's Keras layer `name`, registered when archbuilder.keras.token_layers is imported
    (archbuilder.keras.graph does so before it builds a model)."""
    import keras

    found = keras.saving.get_registered_object(f"archbuilder>{name}")
    if found is None:
        raise RuntimeError(f"archbuilder>{name} is not registered: import archbuilder.keras.token_layers before building")
    return found


class ClassTokenLayer(Primitive):
    """Prepends one learned token (D weights) to the sequence: (N, D) -> (N + 1, D), ViT's [class]."""

    type: Literal["class_token"]
    keras_base_name = "class_token"

    def infer(self, inputs, ctx):
        n, d = tokens(self, inputs)
        return LayerStats((n + 1, d), trainable=d)

    def keras(self, ctx, name, inputs):
        return _registered("ClassToken")(name=name)


class PositionEmbeddingLayer(Primitive):
    """Adds a learned vector to each position: (N, D) + weights (N, D)."""

    type: Literal["position_embedding"]
    keras_base_name = "position_embedding"

    def infer(self, inputs, ctx):
        n, d = tokens(self, inputs)
        return LayerStats((n, d), trainable=n * d)

    def keras(self, ctx, name, inputs):
        return _registered("PositionEmbedding")(name=name)


class MultiHeadAttentionLayer(Primitive):
    """Self-attention over the tokens: Keras's MultiHeadAttention with query, key and value all
    the input. `num_heads` heads of `key_dim` channels (default: D / num_heads, as ViT); the output
    has the input's D channels. `dropout`: on the attention probabilities, in training.

    Its kernels start from Keras's default (glorot_uniform, unseeded), not `defaults.kernel_initializer`:
    MultiHeadAttention gives each projection a clone of its initializer, so a seeded one would start
    the query, key and value projections equal."""

    type: Literal["multi_head_attention"]
    num_heads: PosInt
    key_dim: PosInt | None = None  # None: channels // num_heads, which must divide
    dropout: Rate = 0.0
    use_bias: bool = True
    keras_base_name = "self_attention"

    def describe(self) -> str:
        return f"multi_head_attention {self.num_heads} heads" + (f" '{self.name}'" if isinstance(self.name, str) else "")

    def _key_dim(self, channels: int) -> int:
        if self.key_dim is not None:
            return self.key_dim
        if channels % self.num_heads:
            raise ShapeError(f"{self.describe()}: {self.num_heads} heads do not divide the {channels} channels; "
                             "give key_dim")
        return channels // self.num_heads

    def infer(self, inputs, ctx):
        n, d = tokens(self, inputs)
        width = self.num_heads * self._key_dim(d)
        bias = int(self.use_bias)
        # query, key and value: D -> heads x key_dim each; the output projection back to D.
        weights = 3 * (d * width + bias * width) + width * d + bias * d
        # the four projections per token, then scores (N x N per head) and their weighted sum.
        macs = n * (3 * d * width + width * d) + 2 * n * n * width
        # query, key and value (N x width each), the scores and their softmax (heads x N x N each,
        # and once more after dropout), the heads' weighted sum (N x width).
        working = 4 * n * width + (3 if self.dropout else 2) * self.num_heads * n * n
        return LayerStats((n, d), trainable=weights, macs=macs, working=working)

    def keras(self, ctx, name, inputs):
        (_, d), = inputs
        return _registered("SelfAttention")(num_heads=self.num_heads, key_dim=self._key_dim(d), dropout=self.dropout,
                                            use_bias=self.use_bias, name=name)


class TakeTokenLayer(Primitive):
    """One token of the sequence, `index` (default 0: ViT's class token): (N, D) -> (D,)."""

    type: Literal["take_token"]
    index: NonNegInt = 0
    keras_base_name = "take_token"

    def infer(self, inputs, ctx):
        n, d = tokens(self, inputs)
        if self.index >= n:
            raise ShapeError(f"take_token index {self.index} is beyond the {n} tokens (input shape {(n, d)})")
        return LayerStats((d,))

    def keras(self, ctx, name, inputs):
        return _registered("TakeToken")(index=self.index, name=name)


class AverageTokensLayer(Primitive):
    """The mean of the tokens: (N, D) -> (D,) (a ViT head without a class token, keras-hub's `gap`)."""

    type: Literal["average_tokens"]
    keras_base_name = "global_average_pooling1d"

    def infer(self, inputs, ctx):
        _, d = tokens(self, inputs)
        return LayerStats((d,))

    def keras(self, ctx, name, inputs):
        import keras

        return keras.layers.GlobalAveragePooling1D(name=name)
