"""One-off (seventeenth session, Zen 4): pointwise_tf.py's shapes in PyTorch (channels_last, memory
kept): forward, input gradient, kernel gradient; medians of 7.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/pointwise_torch.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.peers import malloc  # noqa: E402

malloc.restart_with("keep")
import torch  # noqa: E402

from b0_layers import BATCH as B, POINTWISE, time_shape  # noqa: E402  (this script's folder)

totals = {}
for H, ci, co, layers in POINTWISE:
    x = torch.randn(B, ci, H, H).contiguous(memory_format=torch.channels_last)
    w = torch.randn(co, ci, 1, 1).contiguous(memory_format=torch.channels_last)
    dy = torch.randn(B, co, H, H).contiguous(memory_format=torch.channels_last)

    def gradients(mask, x=x, w=w, dy=dy):
        return torch.ops.aten.convolution_backward(dy, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)

    fns = {"fwd": lambda: torch.nn.functional.conv2d(x, w),
           "din": lambda: gradients([True, False, False]), "dw": lambda: gradients([False, True, False])}
    for f in fns.values():
        f(); f()
    time_shape(f"{H}x{H} {ci}->{co}", fns, layers, totals)
print("total", {n: round(v, 1) for n, v in totals.items()})
