"""A Conv2D layer's bias as one BiasAdd in training: the same op Keras ends in, a smaller graph.

Keras's convolution reshapes its bias to [1, 1, 1, filters] and adds it with `keras.ops.add`,
which the TensorFlow backend recognizes as a bias and squeezes back to [filters] for
`tf.nn.bias_add` (keras/src/layers/convolutional/base_conv.py `call`,
keras/src/backend/tensorflow/numpy.py `add`): a reshape and a squeeze around the BiasAdd, and the
gradient tape adds a reshape of the bias gradient back through both, six ops a layer that grappler
then removes. The documented ResNet-50 has 53 biased convolutions (Keras's and the notebook's
ResNets have biases before their batch norms): 371 of its 3,498 training-graph ops at 64x64.

Here the bias goes to `tf.nn.bias_add` as it is: the same BiasAdd on the same values, forward and
backward (BiasAddGrad), so outputs and gradients are Keras's bit for bit
(tests/test_fused_conv_bias.py). Only where Keras itself ends in BiasAdd: a stock channels-last
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
        outputs = layer.convolution_op(inputs, layer.kernel)
        outputs = tf.nn.bias_add(outputs, keras.ops.convert_to_tensor(layer.bias))
        return outputs if layer.activation is None else layer.activation(outputs)

    return call
