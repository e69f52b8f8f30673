"""A Conv2D layer's bias as one BiasAdd in training: the same op Keras ends in, a smaller graph.

Keras's convolution reshapes its bias to [1, 1, 1, filters] and adds it with `keras.ops.add`,
which the TensorFlow backend recognizes as a bias and squeezes back to [filters] for
`tf.nn.bias_add` (keras/src/layers/convolutional/base_conv.py `call`,
keras/src/backend/tensorflow/numpy.py `add`): a reshape and a squeeze around the BiasAdd, and the
gradient tape adds a reshape of the bias gradient back through both, six ops a layer that grappler
then removes. The documented ResNet-50 has 53 biased convolutions (Keras's and the notebook's
ResNets have biases before their batch norms): 371 of its 3,498 training-graph ops at 64x64.

Here the bias goes to `tf.nn.bias_add` as it is: the same BiasAdd on the same values, so the
outputs are Keras's bit for bit. In float32 its gradient is recorded on the tape (tape_gradient.py)
as a BiasAddGrad of the upstream gradient reshaped to [positions, channels], where TensorFlow's
registered gradient is a BiasAddGrad of the upstream gradient itself: with oneDNN on (runtime.py
turns it on), TensorFlow's layout pass fuses that BiasAddGrad with the Conv2DBackpropFilter reading
the same tensor into one `_MklNativeConv2DBackpropFilterWithBias`, and on the AVX-512 Zen 5 the
fused kernel is slower than the two apart (batch 32: 24-27 against 19-21 ms for a 56x56x64 3x3
layer, 56-58 against 29-34 ms for ResNet-18's 7x7 stem). The reshaped view is a tensor the kernel
gradient does not read, so the two stay apart; whole float32 steps at 224x224 run ResNet-18 8-9%,
ResNet-34 6%, ResNet-50 9% and ResNet-101 6% faster (bench/bias_gradient.py, bench/RESULTS.md; a
plain reduce_sum gains less on the bottleneck ResNets). Not measured on the AVX2 machines, where the
separate BiasAddGrad costs at most one more pass over the upstream gradient. The same sum in
another order (tests/test_fused_conv_bias.py bounds it against the exact sum). In bfloat16
(`mixed_bfloat16`) the gradient stays the registered one: there the fused kernel is the faster
(ResNet-50 steps 4% slower apart), and an unfused bfloat16 BiasAddGrad accumulates in bfloat16.
Only where Keras itself ends in BiasAdd: a stock channels-last
Conv2D computing in float32, or in bfloat16 under `mixed_bfloat16` (Keras's BiasAdd then takes
the bias cast to bfloat16, as here), with more than one filter (one filter is a broadcast `tf.add`
there).
The switch is made on layer *instances* (instance_switch.py): model files stay those of stock
layers, and the instance's own `convolution_op` (grouped_conv.py, cpu_kernels.py) still runs.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import SWITCHED_DTYPES, plain_weights, switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped


def fusable(layer) -> bool:
    """A stock channels-last Conv2D with a bias of more than one value, computing in float32 or
    bfloat16 (float32 weights)."""
    if type(layer) is not keras.layers.Conv2D or "call" in vars(layer) or not layer.use_bias:
        return False
    if not plain_weights(layer):
        return False
    return (layer.data_format == "channels_last" and layer.filters > 1
            and layer.compute_dtype in SWITCHED_DTYPES and layer.variable_dtype == "float32")


def use_fused_conv_bias(model) -> list[str]:
    """Switch every fusable Conv2D of `model` (see the module's docstring); their names. Nothing
    where TensorFlow sees a GPU."""
    return switch_instances(model, fusable, _call)


def _call(layer):
    def call(inputs):
        # The layer's convolution_op read at each call: grouped_conv.py and cpu_kernels.py may
        # give the instance its own, before or after this switch.
        return bias_and_activation(layer, layer.convolution_op(inputs, layer.kernel))

    return call


def bias_and_activation(layer, convolved):
    """What a Keras convolution layer's call does after its convolution: the bias, if it has one
    (as `bias_add`), then its activation. The switched calls of other convolution layers
    (depthwise_gradient.py, pointwise_conv.py) end in it too."""
    outputs = bias_add(convolved, keras.ops.convert_to_tensor(layer.bias)) if layer.use_bias else convolved
    return outputs if layer.activation is None else layer.activation(outputs)


def bias_add(convolved, bias):
    """`tf.nn.bias_add(convolved, bias)` of a channels-last tensor; in float32 with the gradient
    `bias_gradient` recorded for the bias (see the module's docstring)."""
    # A tensor, read once (keras.ops.convert_to_tensor hands on a float32 variable as it is).
    bias = tf.convert_to_tensor(bias)
    if convolved.dtype != tf.float32:  # bfloat16: BiasAddGrad, fused (see the module's docstring)
        return tf.nn.bias_add(convolved, bias)
    with untaped():
        outputs = tf.nn.bias_add(convolved, bias)
    record_gradient("BiasAdd", [outputs], [convolved, bias], lambda upstream: [upstream, bias_gradient(upstream)])
    return outputs


def bias_gradient(upstream):
    """The bias gradient of a channels-last float32 BiasAdd: TensorFlow's BiasAddGrad, on a
    [positions, channels] view of `upstream`, a tensor the kernel gradient does not read, so that
    oneDNN's layout pass leaves the two apart (see the module's docstring)."""
    return tf.raw_ops.BiasAddGrad(out_backprop=tf.reshape(upstream, [-1, upstream.shape[-1]]))
