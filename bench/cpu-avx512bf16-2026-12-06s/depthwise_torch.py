"""One-off (seventeenth session, Zen 4): depthwise_tf.py's shapes in PyTorch (channels_last,
memory kept as bench/peers/malloc.py `keep`): forward, input gradient, kernel gradient and both
gradients in one call (`aten::convolution_backward`, what autograd runs); medians of 7.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/depthwise_torch.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.peers import malloc  # noqa: E402

malloc.restart_with("keep")
import torch  # noqa: E402

from b0_layers import BATCH as B, DEPTHWISE, time_shape  # noqa: E402  (this script's folder)

totals = {}
for H, C, k, s, p, layers in DEPTHWISE:
    pad = 0 if p == "VALID" else k // 2
    x = torch.randn(B, C, H, H).contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, k, k)
    dy = torch.randn_like(torch.nn.functional.conv2d(x, w, stride=s, padding=pad, groups=C))

    def gradients(mask, x=x, w=w, dy=dy, s=s, pad=pad, C=C):
        return torch.ops.aten.convolution_backward(dy, x, w, None, [s, s], [pad, pad], [1, 1], False, [0, 0], C, mask)

    fns = {"fwd": lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=pad, groups=C),
           "din": lambda: gradients([True, False, False]), "dw": lambda: gradients([False, True, False]),
           "both": lambda: gradients([True, True, False])}
    for f in fns.values():
        f()
    time_shape(f"{H}x{H}x{C} k{k} s{s} {p}", fns, layers, totals)
print("total ms", {n: round(v, 1) for n, v in totals.items()})
