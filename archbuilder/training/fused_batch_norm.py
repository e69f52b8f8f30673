"""Batch norm in training as TensorFlow's one fused op: the same math, a much smaller graph.

Keras 3 writes a batch norm's training pass as moments, a normalization and two moving-average
updates: ~76 ops per layer once the gradient tape has added its own, so the documented ResNet-50's
53 batch norms are ~4,000 of its ~6,300 training-graph ops. Python builds each of them while
tracing the first step and grappler then optimizes them all: most of the time before the first
step (bench/first_step.py, bench/RESULTS.md). `FusedBatchNormV3` is one op forward and one
(`FusedBatchNormGradV3`) backward that computes Keras's formula:

    y = gamma * (x - mean) / sqrt(variance + epsilon) + beta,  mean and (biased) variance over N, H, W
    moving = moving * momentum + batch statistic * (1 - momentum)

(keras/src/layers/normalization/batch_normalization.py `call`). The one difference: the kernel
returns the batch variance with Bessel's correction, n / (n - 1), where Keras averages the biased
variance into its moving variance. The CPU kernels (Eigen's and oneDNN's) also return the biased
variance, as `reserve_space_2` (what their gradient reads; TensorFlow's op documentation: "the
computed batch variance (inverted variance in the cuDNN case)"), and average the moving mean
themselves with Keras's formula (`exponential_avg_factor` = 1 - momentum): without a GPU, a layer
is 16 ops of the training graph's forward pass where the first form of this switch took 32 (the
documented ResNet-50's training graph 20% smaller; bench/RESULTS.md). With a GPU the
moving mean is averaged here and the corrected variance multiplied back by (n - 1) / n. Either
way the moving statistics are Keras's to float rounding (tests/test_fused_batch_norm.py).

Only where it is the same math: a stock `BatchNormalization` on a 4-D channels-last input, in
training, without renorm or a mask, and synchronized only where its variables belong to one
replica (statistics over one device's batch are what synchronization computes there; under
several replicas Keras's call runs, with synchronized_moments.py's statistics); every other call
(inference, frozen layers, other dtypes) runs Keras's own code. The input is float32, or bfloat16 under `mixed_bfloat16` on
CPU (float32 weights and statistics): Keras casts a bfloat16 input to float32, normalizes there and
rounds the output to bfloat16; the kernel with T = bfloat16, U = float32 computes in float32 inside
and rounds its output the same way, so the two differ by float32 summation order, which can move
an output by one bfloat16 rounding step. On the Zen 5 of bench/RESULTS.md this took a
`mixed_bfloat16` training step of the documented ResNet-50 from 0.226 to 0.172 s (Keras's batch
norm in bfloat16 is a Cast and ~17 more ops a layer each way). Like cpu_kernels.py, the switch is
made on the layer *instances* (their own `call`), never on the class: the model's config and its
saved files are those of stock layers, and a model loaded for --resume is switched again.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import SWITCHED_DTYPES, gpu_present, switch_instances
from archbuilder.training.tape_gradient import record_gradient, untaped

# cuDNN refuses an epsilon under CUDNN_BN_MIN_EPSILON (1e-5), and the op's float32 attribute holds
# 1e-5 as 9.99999975e-06, just under it: so with a GPU, as TensorFlow's own wrapper does
# (tf.nn.fused_batch_norm), 1.001e-5 at least. The CPU kernels (Eigen's, oneDNN's) take the
# epsilon as given; 1e-5 is PyTorch's default and the zoo's torch-convention networks' (ResNeXt,
# SE-ResNet, ResNet-50-D, Wide ResNet), which ran Keras's ~76-op batch norm before (issue 21).
# Keras's default is 1e-3, the notebook's 1e-3.
_MIN_EPSILON_GPU = 1.001e-5
_MIN_EPSILON_CPU = 1e-5


def _min_epsilon() -> float:
    return _MIN_EPSILON_GPU if gpu_present() else _MIN_EPSILON_CPU


def fusable(layer) -> bool:
    """A stock Keras batch norm over the last axis of a 4-D input, with float32 weights."""
    if type(layer) is not keras.layers.BatchNormalization or layer.renorm:
        return False
    if layer.synchronized and _replicas_of(layer) > 1:  # Keras's call, with synchronized_moments.py's statistics
        return False
    try:
        rank = len(layer.input.shape)
    except (AttributeError, ValueError):  # a layer not yet called, or shared by several inputs
        return False
    # bfloat16 on CPU only: cuDNN's bfloat16 batch norm is not the kernel measured and tested here.
    dtype_ok = layer.compute_dtype in SWITCHED_DTYPES and (layer.compute_dtype == "float32" or not gpu_present())
    return (rank == 4 and layer.axis in (-1, 3) and layer.epsilon >= _min_epsilon()
            and layer.variable_dtype == "float32" and dtype_ok)


def _replicas_of(layer) -> int:
    """The replicas of the strategy `layer`'s variables were made under (1 without one): where it
    trains, as `train` builds its model in the strategy's scope."""
    strategy = getattr(layer.moving_mean.value, "distribute_strategy", None)
    return strategy.num_replicas_in_sync if strategy is not None else 1


def use_fused_batch_norm(model) -> list[str]:
    """Switch every fusable batch norm of `model` (see the module's docstring); their names."""
    # Also with a GPU: FusedBatchNormV3 is cuDNN's batch norm there (fusable checks its epsilon floor).
    return switch_instances(model, fusable, lambda layer: _fused_call(layer, layer.call), cpu_only=False)


def _fused_call(layer, keras_call):
    def call(inputs, training=None, mask=None):
        if not (training and layer.trainable) or mask is not None or inputs.dtype.name != layer.compute_dtype:
            return keras_call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        # Tensors (a read each): the tape's record below takes tensors, not variables.
        scale = tf.convert_to_tensor(layer.gamma) if layer.scale else tf.ones([channels])
        offset = tf.convert_to_tensor(layer.beta) if layer.center else tf.zeros([channels])
        momentum = layer.momentum
        # Read once each (keras.ops.convert_to_tensor would hand on the tf.Variable, read at each use).
        moving_mean = tf.convert_to_tensor(layer.moving_mean)
        moving_variance = tf.convert_to_tensor(layer.moving_variance)
        on_cpu = not gpu_present()
        # On CPU the kernel also averages the moving mean, moving * (1 - factor) + mean * factor with
        # factor = 1 - momentum (Keras's formula); the variance it would average is the unbiased one.
        with untaped():  # the gradient is recorded below, for the one output that has one
            outputs, mean, variance, reserve_1, reserved_variance, reserve_3 = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=offset, mean=moving_mean, variance=moving_variance,
                epsilon=layer.epsilon, exponential_avg_factor=1.0 - momentum if on_cpu else 1.0,
                data_format="NHWC", is_training=True)

        def gradient(upstream):
            # TensorFlow's registered gradient of FusedBatchNormV3 in training (nn_grad.py
            # _BaseFusedBatchNormGrad), without the zeros the tape makes for the other outputs.
            dx, dscale, doffset, _, _ = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=upstream, x=inputs, scale=scale, reserve_space_1=reserve_1,
                reserve_space_2=reserved_variance, reserve_space_3=reserve_3, epsilon=layer.epsilon,
                data_format="NHWC", is_training=True)
            return dx, dscale, doffset

        record_gradient("FusedBatchNormV3", [outputs], [inputs, scale, offset], gradient)
        if on_cpu:  # the CPU kernels' reserve space: the biased batch variance
            new_mean, variance = mean, reserved_variance
        else:  # cuDNN's reserve space holds the inverted standard deviation: undo Bessel's correction
            new_mean = moving_mean * momentum + mean * (1.0 - momentum)
            count = tf.cast(tf.size(inputs, out_type=tf.int64) // channels, tf.float32)
            variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
        layer.moving_mean.assign(new_mean)
        layer.moving_variance.assign(moving_variance * momentum + variance * (1.0 - momentum))
        return outputs

    return call
