"""Two things tf2onnx cannot convert in the graphs Keras traces, and how the ONNX export gets past
them. Found exporting ConvNeXt; both are exact rewrites, checked by running the ONNX file in
ONNX Runtime against Keras (tests/test_export.py).

1. Grouped convolutions (ConvNeXt's depthwise 7x7, ResNeXt's 32 groups). TensorFlow's CPU
   Conv2D kernel cannot run them, so Keras wraps every grouped convolution in a function compiled
   by XLA (keras/src/backend/tensorflow/nn.py, `conv`), and tf2onnx cannot see into that call.
   ONNX's Conv has a `group` attribute, and tf2onnx sets it from the filter's shape, so during the
   conversion the convolution is traced as the plain op. The graph is converted, never run by
   TensorFlow, so the CPU kernel's limit does not matter there.
2. Exact GELU. TensorFlow computes it as 0.5 x erfc(-x / sqrt 2); tf2onnx has no Erfc. It is
   converted as 1 - Erf(x) (ONNX has Erf since opset 9). In float32 the subtraction loses at most
   an ulp of 1 (6e-8) where erf is near 1, i.e. where GELU's output is ~0.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def onnx_convertible_graph() -> Iterator[None]:
    """While converting to ONNX: grouped convolutions traced as the plain op, Erfc converted."""
    _register_erfc()
    from keras.src.backend.tensorflow import nn as tensorflow_nn

    keras_conv = tensorflow_nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        import tensorflow as tf

        from keras.src import backend

        data_format = backend.standardize_data_format(data_format)
        channels = inputs.shape[-1] if data_format == "channels_last" else inputs.shape[1]
        if channels == kernel.shape[-2]:  # not grouped: Keras's own path, untouched
            return keras_conv(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(inputs, kernel, strides, padding.upper(), dilations=dilation_rate,
                                 data_format=tensorflow_nn._convert_data_format(data_format, len(inputs.shape)))

    tensorflow_nn.conv = conv
    try:
        yield
    finally:
        tensorflow_nn.conv = keras_conv


_registered = False


def _register_erfc() -> None:
    """Teach tf2onnx Erfc, through its own handler registry (as its built-in ops are added)."""
    global _registered
    if _registered:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:  # noqa: F841 - registered by the decorator
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            numpy_type = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name("erfc_one"), np.array(1, dtype=numpy_type))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            shapes, dtypes, output = node.output_shapes, node.output_dtypes, node.output[0]
            ctx.remove_node(node.name)
            ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=[output], name=node.name,
                          shapes=shapes, dtypes=dtypes)

    _registered = True
