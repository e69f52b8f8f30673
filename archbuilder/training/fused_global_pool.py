"""Global average pooling's gradient with the window's size known: 4 ops instead of 12.

A network's head and every squeeze-and-excitation block average each channel over the feature
map (`GlobalAveragePooling2D`, a Mean over height and width). With the batch size unknown, as in
the traced training step, TensorFlow's registered gradient (math_grad.py `_MeanGrad`) computes
the number of values averaged from the input's runtime shape (Shape, Size, AddV2, FloorMod,
GatherV2, Prod, Cast and their constants) to divide the broadcast upstream gradient by it, and
without `keepdims` reshapes the gradient through a shape computed the same way: 12-23 ops a layer,
traced while the first step waits (~0.9 ms an op on a first-generation EPYC; bench/RESULTS.md).
EfficientNet-B0 has 17 such layers, SE-ResNet-50 17, every other classifier one.

The height and width are known when the model is built, so here the gradient is recorded on the
tape (tape_gradient.py) as what TensorFlow's computes: the upstream gradient broadcast to the
input's shape, divided by height x width. The same Mean forward and the same division of the
same values backward: Keras's outputs bit for bit, its gradients to the order of TensorFlow's
sums of a tensor's gradients from several consumers, which it does not fix from run to run
either. Only channels-last float32
layers with a known height and width; the switch is made on layer *instances*
(instance_switch.py), so model files stay those of stock layers.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped


def fusable(layer) -> bool:
    """A stock channels-last GlobalAveragePooling2D computing in float32."""
    return (type(layer) is keras.layers.GlobalAveragePooling2D and "call" not in vars(layer)
            and layer.data_format == "channels_last" and layer.compute_dtype == "float32")


def use_fused_global_pool(model) -> list[str]:
    """Switch every fusable global average pooling of `model` (see the module's docstring); their
    names. Nothing where TensorFlow sees a GPU."""
    return switch_instances(model, fusable, _call)


def _call(layer):
    def call(inputs):
        inputs = tf.convert_to_tensor(inputs)
        if inputs.shape.rank != 4 or None in inputs.shape[1:]:  # sizes known only at run time
            return type(layer).call(layer, inputs)
        height, width, channels = inputs.shape[1:]
        with untaped():
            outputs = tf.reduce_mean(inputs, axis=[1, 2], keepdims=layer.keepdims)

        def gradient(upstream):
            if not layer.keepdims:
                upstream = tf.reshape(upstream, [-1, 1, 1, channels])
            # _MeanGrad: the broadcast gradient divided by the count cast to the input's dtype.
            return [tf.broadcast_to(upstream, tf.shape(inputs)) / tf.constant(height * width, inputs.dtype)]

        record_gradient("GlobalAveragePooling2D", [outputs], [inputs], gradient)
        return outputs

    return call
