"""Whether winograd_conv.py's F(2x2, 3x3) pays for a convolution shape on *this* machine: timed
once, then cached.

Winograd trades products for transforms that run at memory speed, so whether it wins depends on
the CPU's arithmetic rate against its memory bandwidth, on oneDNN's kernel for the direct
convolution, on the shape and on the batch (more tiles make larger, faster matrix products:
14x14x256 -> 256 on the Zen 5 ran 1.02x at batch 8, 1.15-1.20x at 16 and 1.28x at 32;
bench/RESULTS.md). So `train` times forward pass plus both gradients of each candidate shape
(winograd_conv.py `candidate`) at the run's batch, Keras's op and Winograd interleaved call by
call, the fastest of REPEATS calls of each (other programs only ever add time to a call), once,
and keeps the answer in the user's cache folder under the machine key of the other kernel
choices (kernel_choice.py). Winograd is switched on only where it took at most SWITCH_BELOW of
Keras's time.

The timing, cache and messages are timed_switch.py's (cache file `winograd-<hash>.json`).
"""

from __future__ import annotations

from archbuilder.training.timed_switch import TimedSwitch
from archbuilder.training.winograd_conv import candidate, winograd_convolution_op

CACHE_NAME = "winograd"
# At most this many layers of a model switch, the first in its order: each adds ~0.2 s or more to
# the first training step (winograd_conv.py MAX_MAP), and issue 21 holds that step within 10 s of
# a later one. ResNet-34 has 11 candidates, the ResNet-50 forms 5-6, ResNet-101 23, ResNet-152 36
# (~4% of ResNet-101's step from 12 of its 23 in place of ~6% from all).
MAX_LAYERS = 12


def shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    return f"{height}x{width}x{channels} k3x3 s1 {layer.padding} f{layer.filters} b{batch_size} {layer.compute_dtype}"


WINOGRAD = TimedSwitch(
    kernel="winograd", cache_name=CACHE_NAME, candidate=candidate, shape_key=shape_key,
    replacement=winograd_convolution_op, title="Winograd F(2x2, 3x3)", timed="Winograd 3x3 convolutions",
    max_layers=MAX_LAYERS, cap_reason="each adds to the first step")
choose_winograd = WINOGRAD.choose
switch_winograd = WINOGRAD.switch
switch_winograd_where_faster = WINOGRAD.switch_where_faster
