"""A residual Add's gradient handed to its inputs as it is: no broadcasting machinery in the graph.

Every residual connection ends in Keras's `Add` layer, an AddV2 of tensors of one shape. Its
registered gradient does not know the shapes are equal when the batch size is unknown, as in the
traced training step (math_grad.py `_AddGrad`: `_SmartBroadcastGradientArgs` needs fully known
shapes), so each add builds a broadcast reduction for each input: two Shape ops,
BroadcastGradientArgs, two Sums and two Reshapes, 7 ops that return the upstream gradient
unchanged, traced while the first step waits (~0.9 ms an op on a first-generation EPYC;
bench/RESULTS.md) and then optimized away by grappler. ResNet-50 has 16 such adds, ResNet-152 50,
ViT-B/16 24, ConvNeXt-T 18.

Here the same AddV2 ops are built (the outputs are Keras's bit for bit) and the gradient is
recorded on the tape (tape_gradient.py) as the upstream gradient for every input: the value
TensorFlow's gradient computes (sums over no axes), with no op at all. Gradients are Keras's to
the order in which TensorFlow sums a tensor's gradients from its several consumers, which it
does not fix from run to run either (tests/test_fused_add.py). Only where every input
has the output's static shape (an unknown batch size aside), in float32 or bfloat16
(`mixed_bfloat16`: the same AddV2s on bfloat16 tensors); the switch is made on
layer *instances* (instance_switch.py), so model files stay those of stock layers.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import SWITCHED_DTYPES, switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped


def _same_shapes(tensors) -> bool:
    """Two or more tensors of one static shape, known but for the batch size."""
    try:
        shapes = {tuple(tensor.shape) for tensor in tensors}
    except ValueError:  # a shape of unknown rank
        return False
    return len(tensors) >= 2 and len(shapes) == 1 and None not in next(iter(shapes))[1:]


def fusable(layer) -> bool:
    """A stock Add layer computing in float32 or bfloat16 whose inputs have one static shape in
    every call of the model (a shared layer's calls included)."""
    if type(layer) is not keras.layers.Add or "call" in vars(layer):
        return False
    if layer.compute_dtype not in SWITCHED_DTYPES:
        return False
    calls = [node.input_tensors for node in getattr(layer, "_inbound_nodes", [])]
    return bool(calls) and all(_same_shapes(tensors) for tensors in calls)


def use_fused_add(model) -> list[str]:
    """Switch every fusable Add of `model` (see the module's docstring); their names. Nothing where
    TensorFlow sees a GPU."""
    return switch_instances(model, fusable, _call)


def _call(layer):
    def call(inputs):
        tensors = [tf.convert_to_tensor(x) for x in inputs]
        if not _same_shapes(tensors):  # called on other inputs than the model's: Keras's own add
            return type(layer).call(layer, inputs)
        with untaped():
            outputs = tensors[0]
            for tensor in tensors[1:]:  # Keras's order (Add._merge_function): the same sums
                outputs = tf.add(outputs, tensor)
        record_gradient("ResidualAdd", [outputs], tensors, lambda upstream: [upstream] * len(tensors))
        return outputs

    return call
