"""One-off (seventeenth session, Zen 4): EfficientNet-B0's 1x1 shapes, batch 32, each pass alone in
TensorFlow: Conv2D and its two gradients (oneDNN) and the same as matrix products (what
pointwise_conv.py runs); medians of 7 calls, interleaved; totals weighted by B0's layer counts.
pointwise_torch.py is PyTorch's side.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/pointwise_tf.py
"""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from archbuilder import runtime  # noqa
import tensorflow as tf
B=32
# B0 1x1 shapes (H, Cin, Cout, count)
S=[(112,32,16,1),(112,16,96,1),(56,96,24,1),(56,24,144,2),(56,144,24,1),(28,144,40,1),(28,40,240,2),(28,240,40,1),(14,240,80,1),(14,80,480,3),(14,480,80,2),(14,480,112,1),(14,112,672,3),(14,672,112,2),(7,672,192,1),(7,192,1152,4),(7,1152,192,3),(7,1152,320,1),(7,320,1280,1)]
tot={}
for H,ci,co,cnt in S:
    x=tf.random.normal([B,H,H,ci]); w=tf.random.normal([1,1,ci,co]); dy=tf.random.normal([B,H,H,co])
    st=[1,1,1,1]
    fns={"fwd": tf.function(lambda: tf.raw_ops.Conv2D(input=x, filter=w, strides=st, padding="VALID")),
         "din": tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.constant([B,H,H,ci]), filter=w, out_backprop=dy, strides=st, padding="VALID")),
         "dw": tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.constant([1,1,ci,co]), out_backprop=dy, strides=st, padding="VALID")),
         "mm_fwd": tf.function(lambda: tf.matmul(tf.reshape(x,[-1,ci]), tf.reshape(w,[ci,co]))),
         "mm_din": tf.function(lambda: tf.matmul(tf.reshape(dy,[-1,co]), tf.reshape(w,[ci,co]), transpose_b=True)),
         "mm_dw": tf.function(lambda: tf.matmul(tf.reshape(x,[-1,ci]), tf.reshape(dy,[-1,co]), transpose_a=True)),}
    for f in fns.values(): f(); f()
    times={n:[] for n in fns}
    for r in range(7):
        for n,f in fns.items():
            t0=time.perf_counter(); f(); times[n].append(time.perf_counter()-t0)
    med={n:statistics.median(v)*1e3 for n,v in times.items()}
    for n in med: tot[n]=tot.get(n,0)+cnt*med[n]
    print(f"{H}x{H} {ci}->{co} x{cnt}: "+"  ".join(f"{n} {med[n]:.2f}" for n in fns), flush=True)
print("total", {n: round(v,1) for n,v in tot.items()})
