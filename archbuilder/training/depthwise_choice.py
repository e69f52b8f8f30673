"""Whether depthwise_gradient.py's kernel gradient pays for a DepthwiseConv2D shape on *this*
machine: timed once per shape at the run's batch, then cached (timed_switch.py; cache file
`depthwise-gradient-<hash>.json`). On the AVX-512 Zen 5, TensorFlow's own kernel won for 5x5
filters and lost for 3x3 ones on large maps (bench/RESULTS.md): which wins is the CPU's and
oneDNN's, so it is timed.
"""

from __future__ import annotations

from archbuilder.training.depthwise_gradient import KERNEL, candidate, depthwise_call
from archbuilder.training.timed_switch import TimedSwitch

CACHE_NAME = "depthwise-gradient"


def shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    kh, kw = layer.kernel_size
    return f"{height}x{width}x{channels} k{kh}x{kw} s{layer.strides[0]} {layer.padding} b{batch_size} {layer.compute_dtype}"


DEPTHWISE_GRADIENT = TimedSwitch(
    kernel=KERNEL, cache_name=CACHE_NAME, candidate=candidate, shape_key=shape_key, replacement=depthwise_call,
    title="TensorFlow's own depthwise kernel gradient", timed="depthwise kernel gradients", hook="call",
    baseline="oneDNN's", kept_as="oneDNN's depthwise kernel gradients", budgeted=True)  # B0's 12 shapes: 4.5 s
choose_depthwise_gradient = DEPTHWISE_GRADIENT.choose
switch_depthwise_gradient = DEPTHWISE_GRADIENT.switch
switch_depthwise_gradient_where_faster = DEPTHWISE_GRADIENT.switch_where_faster
