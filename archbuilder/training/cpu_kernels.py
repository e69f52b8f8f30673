"""Faster training kernels on CPU for convolutions that oneDNN handles slowly; the same math.

oneDNN computes a convolution's kernel gradient ("backward weights") with its JIT kernels for
most shapes, but when the kernel is larger than its input (the 3x3 convolutions of ResNet-50's
last stage, which at 64x64 see a 2x2 input) it falls back to a GEMM-per-image path that
runs at ~9 GFLOP/s on Zen 3 (found with ONEDNN_VERBOSE=1). Forward pass plus kernel gradient
of such a layer takes 64.7 ms, against 9.4 ms for the forward pass alone and 19.2 ms for both
when computed as below (bench/kernel_gradients.py). Training the documented network gets
1.12-1.18x faster (bench/train_speed.py, `cli` vs `cli-tf-kernels`; bench/RESULTS.md). Other CPUs
(AVX-512, where TensorFlow turns oneDNN on by itself) may get other kernels: `train` switches a
layer only where the switch measured faster on the running machine (kernel_choice.py).

For such layers this module computes the kernel gradient as one matrix product of the input's
patches with the output gradient, dW = patches(x)^T · dY, which is the definition of the kernel
gradient (tests/test_cpu_kernels.py checks it against TensorFlow's own to float rounding). The
forward pass and the input gradient keep TensorFlow's kernels.

The switch is made on layer *instances*, by giving them their own `convolution_op` (the hook
Keras's convolution layers call), never by changing their class: the model keeps stock
`keras.layers.Conv2D` layers, its config and saved files are those of the unswitched model, and a
model loaded from a checkpoint is switched again before training resumes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from archbuilder.training.instance_switch import gpu_present


def slow_kernel_gradient(layer) -> bool:
    """True for the convolutions whose kernel gradient oneDNN computes on its slow path: plain
    Conv2D layers (channels last, no dilation, no groups) whose kernel is larger than their input."""
    if not isinstance(layer, keras.layers.Conv2D) or type(layer).convolution_op is not keras.layers.Conv2D.convolution_op:
        return False
    if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
        return False
    try:
        height, width = layer.input.shape[1:3]
    except (AttributeError, ValueError):  # a layer not yet called, or shared by several inputs
        return False
    kernel_height, kernel_width = layer.kernel_size
    return height is not None and width is not None and (height < kernel_height or width < kernel_width)


def use_fast_kernel_gradients(model, only: set[str] | None = None) -> list[str]:
    """Switch every slow convolution of `model` (see the module's docstring), or those of them
    named in `only`; returns their names. `train` passes the layers for which the switch measured
    faster on the running CPU (kernel_choice.py).

    Does nothing where TensorFlow sees a GPU: cuDNN has no such slow path.
    """
    if gpu_present():
        return []
    switched = []
    for layer in model.layers:
        if slow_kernel_gradient(layer) and (only is None or layer.name in only):
            layer.convolution_op = matmul_kernel_gradient_op(layer)
            switched.append(layer.name)
    return switched


def matmul_kernel_gradient_op(layer):
    """A `convolution_op` for `layer` whose kernel gradient is one matrix product."""
    kernel_height, kernel_width = layer.kernel_size
    strides = [1, *layer.strides, 1]
    padding = layer.padding.upper()  # Keras's 'same' / 'valid' are TensorFlow's SAME / VALID

    @tf.custom_gradient
    def convolution(inputs, kernel):
        outputs = tf.nn.conv2d(inputs, kernel, strides, padding)

        def gradient(output_gradient):
            input_gradient = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(inputs), filter=kernel, out_backprop=output_gradient,
                strides=strides, padding=padding,
            )
            # Patches are laid out (kernel row, kernel column, input channel), as the kernel is.
            patches = tf.image.extract_patches(
                inputs, [1, kernel_height, kernel_width, 1], strides, [1, 1, 1, 1], padding
            )
            kernel_gradient = tf.matmul(
                tf.reshape(patches, [-1, kernel_height * kernel_width * inputs.shape[-1]]),
                tf.reshape(output_gradient, [-1, output_gradient.shape[-1]]),
                transpose_a=True,
            )
            return input_gradient, tf.reshape(kernel_gradient, tf.shape(kernel))

        return outputs, gradient

    def convolution_op(inputs, kernel):
        # Read the variable outside the custom gradient, so its gradient flows through the read.
        return convolution(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))

    return convolution_op
