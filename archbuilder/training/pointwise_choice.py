"""Whether pointwise_conv.py's matrix product pays for a 1x1 convolution shape on *this* machine:
timed once per shape at the run's batch, then cached (timed_switch.py; cache file
`pointwise-<hash>.json`).

On the AVX-512 Zen 5 at batch 32 the product took 0.74-1.06x of TensorFlow's time over
EfficientNet-B0's 19 shapes and 0.87-1.06x over ResNet-50's 9; at batch 8 the order changed for
several shapes (bench/RESULTS.md), so the choice is the batch's, not one for all batches.
"""

from __future__ import annotations

from archbuilder.training.pointwise_conv import candidate, pointwise_convolution_op
from archbuilder.training.timed_switch import TimedSwitch

CACHE_NAME = "pointwise"
# Seconds of timing a run (timed_switch.py): EfficientNet-B0's 19 shapes took 4.1-6.2 s at batch
# 32 on the Zen 5, ResNet-50's 9 5.1 s.
BUDGET_S = 3.0


def shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    return f"{height}x{width}x{channels} k1x1 s1 f{layer.filters} b{batch_size} {layer.compute_dtype}"


POINTWISE = TimedSwitch(
    kernel="matmul", cache_name=CACHE_NAME, candidate=candidate, shape_key=shape_key,
    convolution_op=pointwise_convolution_op, title="matrix products",
    timed="1x1 convolutions as matrix products", budget_s=BUDGET_S)
choose_pointwise = POINTWISE.choose
switch_pointwise = POINTWISE.switch
switch_pointwise_where_faster = POINTWISE.switch_where_faster
