"""One-off (seventeenth session, Zen 4): EfficientNet-B0's depthwise shapes as `train` sees them
(the cache's keys: stride-2 layers VALID after their padding), batch 32, each pass alone:
TensorFlow's forward, input gradient and kernel gradient with oneDNN (the ops as Keras writes
them) and with TensorFlow's own kernels (the same op with its padding written out: the layout
pass leaves that to TensorFlow); medians of 7 calls, interleaved; totals weighted by B0's layer
counts. depthwise_torch.py is PyTorch's side.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/depthwise_tf.py
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from archbuilder import runtime  # noqa: E402,F401  (TensorFlow's environment as train sets it)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from b0_layers import BATCH, DEPTHWISE, time_shape  # noqa: E402  (this script's folder)

B = int(os.environ.get("B", BATCH))


def pads(size, k, s, p):
    if p == "VALID":
        return 0, 0
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


totals = {}
for H, C, k, s, p, layers in DEPTHWISE:
    x = tf.random.normal([B, H, H, C]); Ho = -(-H // s) if p == "SAME" else (H - k) // s + 1
    dy = tf.random.normal([B, Ho, Ho, C]); w = tf.random.normal([k, k, C, 1])
    t, b = pads(H, k, s, p); ep = [0, 0, t, b, t, b, 0, 0]; st = [1, s, s, 1]
    fs = tf.constant([k, k, C, 1]); xs = tf.constant([B, H, H, C])
    fns = {
        "fwd_onednn": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNative(input=x, filter=w, strides=st, padding=p)),
        "fwd_eigen": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNative(
            input=x, filter=w, strides=st, padding="EXPLICIT", explicit_paddings=ep)),
        "din_onednn": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
            input_sizes=xs, filter=w, out_backprop=dy, strides=st, padding=p)),
        "din_eigen": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
            input_sizes=xs, filter=w, out_backprop=dy, strides=st, padding="EXPLICIT", explicit_paddings=ep)),
        "dw_onednn": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
            input=x, filter_sizes=fs, out_backprop=dy, strides=st, padding=p)),
        "dw_eigen": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
            input=x, filter_sizes=fs, out_backprop=dy, strides=st, padding="EXPLICIT", explicit_paddings=ep)),
    }
    outs = {n: f().numpy() for n, f in fns.items()}  # traces, and the two kernels must agree
    for a in ("fwd", "din", "dw"):
        r = outs[a + "_eigen"]; e = np.abs(outs[a + "_onednn"] - r).max() / np.abs(r).max(); assert e < 1e-4, (a, e)
    time_shape(f"{H}x{H}x{C} k{k} s{s} {p}", fns, layers, totals)
print("total ms", {n: round(v, 1) for n, v in totals.items()})
