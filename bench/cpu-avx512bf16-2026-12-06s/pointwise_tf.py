"""One-off (seventeenth session, Zen 4): EfficientNet-B0's 1x1 shapes, batch 32, each pass alone in
TensorFlow: Conv2D and its two gradients (oneDNN) and the same as matrix products (what
pointwise_conv.py runs); medians of 7 calls, interleaved; totals weighted by B0's layer counts.
pointwise_torch.py is PyTorch's side.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/pointwise_tf.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from archbuilder import runtime  # noqa: E402,F401  (TensorFlow's environment as train sets it)
import tensorflow as tf  # noqa: E402

from b0_layers import BATCH as B, POINTWISE, time_shape  # noqa: E402  (this script's folder)

totals = {}
for H, ci, co, layers in POINTWISE:
    x = tf.random.normal([B, H, H, ci]); w = tf.random.normal([1, 1, ci, co]); dy = tf.random.normal([B, H, H, co])
    st = [1, 1, 1, 1]
    fns = {"fwd": tf.function(lambda: tf.raw_ops.Conv2D(input=x, filter=w, strides=st, padding="VALID")),
           "din": tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
               input_sizes=tf.constant([B, H, H, ci]), filter=w, out_backprop=dy, strides=st, padding="VALID")),
           "dw": tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
               input=x, filter_sizes=tf.constant([1, 1, ci, co]), out_backprop=dy, strides=st, padding="VALID")),
           "mm_fwd": tf.function(lambda: tf.matmul(tf.reshape(x, [-1, ci]), tf.reshape(w, [ci, co]))),
           "mm_din": tf.function(lambda: tf.matmul(tf.reshape(dy, [-1, co]), tf.reshape(w, [ci, co]), transpose_b=True)),
           "mm_dw": tf.function(lambda: tf.matmul(tf.reshape(x, [-1, ci]), tf.reshape(dy, [-1, co]), transpose_a=True))}
    for f in fns.values():
        f(); f()
    time_shape(f"{H}x{H} {ci}->{co}", fns, layers, totals)
print("total", {n: round(v, 1) for n, v in totals.items()})
