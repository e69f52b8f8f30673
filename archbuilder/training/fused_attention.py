"""Self-attention in training as plain matrix products: the same math, the CPU's fast kernels.

Keras's MultiHeadAttention computes each projection as an `EinsumDense` ('abc,cde->abde' for
query, key and value, 'abcd,cde->abe' for the output) and the attention core as two einsums
('BTNH,BSNH->BNTS', 'BNTS,BSNH->BTNH') around a softmax. TensorFlow's CPU einsum runs these as
batched products over (batch, heads) with transposes inside each call, and their gradients the
same way. Here the same arithmetic runs as 2-D products (one [tokens, C] x [C, 3 * heads * dim]
for query, key and value together, one [tokens, heads * dim] x [heads * dim, C] for the output,
each with a fused bias add) and two batched products over (batch, heads), as PyTorch's
`nn.MultiheadAttention` and timm's ViT compute it. On an Intel Xeon with AMX a whole ViT-B/16
training step at batch 16 is 1.085x cheaper this way (bench/fused_kernels.py, bench/RESULTS.md).

Each output is the same sums of the same products as Keras's (query and key dot products scaled
by 1 / sqrt(key_dim) after the product, as Keras's `dot_product_attention` does; softmax over the
keys in float32), only summed in another order: outputs and gradients agree with Keras's to
float32 rounding (tests/test_fused_attention.py). Gradients are TensorFlow's own for these ops;
the attention core's are written out (`attention_core`) without the broadcast reductions the
batched products' registered gradients add for an unknown batch size.

The switch is made on layer instances (instance_switch.py): model files are those of stock
layers. It applies to this package's `SelfAttention` in its plain form only: float32, no dropout on the
attention weights (with dropout Keras draws its own mask, which this path would not reproduce),
no gate, no output shape of its own, attention over the sequence axis, no sliding window, and
stock projections (no LoRA, not quantized).
"""

from __future__ import annotations

import tensorflow as tf

from archbuilder.keras.token_layers import SelfAttention
from archbuilder.training.instance_switch import plain_weights, switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped


def fusable(layer) -> bool:
    """A plain `SelfAttention` (see the module's docstring) computing in float32."""
    if type(layer) is not SelfAttention or "call" in vars(layer) or not layer.built:
        return False
    if layer.compute_dtype != "float32" or layer._dropout > 0 or layer._use_gate:
        return False
    if layer._output_shape is not None or layer._attention_axes not in (None, (1,), [1]):
        return False
    if getattr(layer, "_sliding_window", None) is not None:
        return False
    projections = (layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense)
    return all(plain_weights(p) for p in projections)


def use_fused_attention(model) -> list[str]:
    """Switch every fusable self-attention layer of `model` (see the module's docstring); their
    names. Nothing where TensorFlow sees a GPU (its batched products are already fast there)."""
    return switch_instances(model, fusable, _attention_call)


def _attention_call(layer):
    heads, key_dim, value_dim = layer._num_heads, layer._key_dim, layer._value_dim
    query, key, value, output = layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense
    scale = layer._inverse_sqrt_key_dim

    def call(inputs, training=None):
        inputs = tf.convert_to_tensor(inputs)
        channels = inputs.shape[-1]
        batch, length = tf.shape(inputs)[0], tf.shape(inputs)[1]
        # One product for the three projections: their kernels side by side, [C, heads * (2k + v)].
        kernel = tf.concat([tf.reshape(query.kernel, [channels, heads * key_dim]),
                            tf.reshape(key.kernel, [channels, heads * key_dim]),
                            tf.reshape(value.kernel, [channels, heads * value_dim])], axis=1)
        projected = tf.matmul(tf.reshape(inputs, [-1, channels]), kernel)
        if query.bias is not None:
            projected = tf.nn.bias_add(projected, tf.concat(
                [tf.reshape(query.bias, [-1]), tf.reshape(key.bias, [-1]), tf.reshape(value.bias, [-1])], 0))
        q, k, v = tf.split(projected, [heads * key_dim, heads * key_dim, heads * value_dim], axis=1)
        q, k, v = (_heads_first(t, batch, length, heads) for t in (q, k, v))
        attended = attention_core(q, k, v, scale)                    # [batch, heads, T, value_dim]
        attended = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [-1, heads * value_dim])
        outputs = tf.matmul(attended, tf.reshape(output.kernel, [heads * value_dim, -1]))
        if output.bias is not None:
            outputs = tf.nn.bias_add(outputs, output.bias)
        return tf.reshape(outputs, [batch, length, outputs.shape[-1]])

    return call


def attention_core(q, k, v, scale: float):
    """softmax(q k^T * scale) v over [batch, heads, T, dim] tensors, with TensorFlow's own
    gradients of these ops written out and recorded on the tape (tape_gradient.py). With the batch
    size unknown, the registered gradients of the two batched products each add a broadcast
    reduction over the batch axes (two Shapes, two StridedSlices and their constants,
    BroadcastGradientArgs, two Sums, two Reshapes) that sums over no axis: ~26 ops a layer that
    change no value."""
    with untaped():
        weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale, axis=-1)   # [batch, heads, T, T]
        attended = tf.matmul(weights, v)

    def gradient(upstream):
        # math_grad.py _BatchMatMulV2Grad and nn_grad.py _SoftmaxGrad, in their order of operations.
        d_weights = tf.matmul(upstream, v, adjoint_b=True)
        d_v = tf.matmul(weights, upstream, adjoint_a=True)
        d_logits = (d_weights - tf.reduce_sum(d_weights * weights, -1, keepdims=True)) * weights
        d_logits = d_logits * scale
        return tf.matmul(d_logits, k), tf.matmul(d_logits, q, adjoint_a=True), d_v

    record_gradient("AttentionCore", [attended], [q, k, v], gradient)
    return attended


def _heads_first(projection, batch, length, heads):
    """[batch * T, heads * dim] -> [batch, heads, T, dim]."""
    return tf.transpose(tf.reshape(projection, [batch, length, heads, -1]), [0, 2, 1, 3])
