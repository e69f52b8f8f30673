"""Whether pointwise_conv.py's matrix product pays for a 1x1 convolution shape on *this* machine:
timed once per shape at the run's batch, then cached (timed_switch.py; cache file
`pointwise-<hash>.json`).

On the AVX-512 Zen 5 at batch 32 the product took 0.74-1.06x of TensorFlow's time over
EfficientNet-B0's 19 shapes and 0.87-1.06x over ResNet-50's 9; at batch 8 the order changed for
several shapes (bench/RESULTS.md), so the choice is the batch's, not one for all batches. The
1x1 halves of separable convolutions (Xception's) are a second switch of the same kind
(`separable-pointwise-<hash>.json`).
"""

from __future__ import annotations

from archbuilder.training.pointwise_conv import candidate, pointwise_convolution_op, separable_call, separable_candidate
from archbuilder.training.timed_switch import TimedSwitch

CACHE_NAME = "pointwise"
SEPARABLE_CACHE_NAME = "separable-pointwise"


def shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    return f"{height}x{width}x{channels} k1x1 s1 f{layer.filters} b{batch_size} {layer.compute_dtype}"


POINTWISE = TimedSwitch(
    kernel="matmul", cache_name=CACHE_NAME, candidate=candidate, shape_key=shape_key,
    replacement=pointwise_convolution_op, title="matrix products",
    timed="1x1 convolutions as matrix products", budgeted=True)  # B0's 19 shapes: 4.1-6.2 s on the Zen 5
choose_pointwise = POINTWISE.choose
switch_pointwise = POINTWISE.switch
switch_pointwise_where_faster = POINTWISE.switch_where_faster


def separable_shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    kh, kw = layer.kernel_size
    return (f"{height}x{width}x{channels} k{kh}x{kw} s{layer.strides[0]} {layer.padding} m{layer.depth_multiplier} "
            f"f{layer.filters} b{batch_size} {layer.compute_dtype}")


SEPARABLE = TimedSwitch(
    kernel="matmul", cache_name=SEPARABLE_CACHE_NAME, candidate=separable_candidate, shape_key=separable_shape_key,
    replacement=separable_call, title="separable convolutions with their 1x1 half as matrix products",
    timed="separable convolutions' 1x1 halves as matrix products", hook="call", budgeted=True)  # Xception's 10: 29 s
switch_separable_where_faster = SEPARABLE.switch_where_faster
