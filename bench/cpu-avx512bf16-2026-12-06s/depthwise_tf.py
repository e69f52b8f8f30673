"""One-off (seventeenth session, Zen 4): EfficientNet-B0's depthwise shapes as `train` sees them
(the cache's keys: stride-2 layers VALID after their padding), batch 32, each pass alone:
TensorFlow's forward, input gradient and kernel gradient with oneDNN (the ops as Keras writes
them) and with TensorFlow's own kernels (the same op with its padding written out: the layout
pass leaves that to TensorFlow); medians of 7 calls, interleaved; totals weighted by B0's layer
counts. depthwise_torch.py is PyTorch's side.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/depthwise_tf.py
"""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from archbuilder import runtime  # noqa
import tensorflow as tf, numpy as np
# (H, C, k, s, padding)  B0 as train sees it (cache keys)
SHAPES = [(112,32,3,1,"SAME"),(113,96,3,2,"VALID"),(56,144,3,1,"SAME"),(59,144,5,2,"VALID"),(28,240,5,1,"SAME"),(29,240,3,2,"VALID"),
          (14,480,3,1,"SAME"),(14,480,5,1,"SAME"),(14,672,5,1,"SAME"),(17,672,5,2,"VALID"),(7,1152,5,1,"SAME"),(7,1152,3,1,"SAME")]
COUNT = [1,1,1,1,1,1,2,1,2,1,3,1]
B = int(os.environ.get("B", 32))
def pads(size,k,s,p):
    if p == "VALID": return 0,0
    total = max((-(-size//s)-1)*s + k - size, 0); return total//2, total-total//2
tot = {}
for (H,C,k,s,p),cnt in zip(SHAPES,COUNT):
    x = tf.random.normal([B,H,H,C]); Ho = -(-H//s) if p=="SAME" else (H-k)//s+1
    dy = tf.random.normal([B,Ho,Ho,C]); w = tf.random.normal([k,k,C,1])
    t,b = pads(H,k,s,p); ep=[0,0,t,b,t,b,0,0]; st=[1,s,s,1]
    fs = tf.constant([k,k,C,1]); xs = tf.constant([B,H,H,C])
    fns = {
     "fwd_onednn": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNative(input=x, filter=w, strides=st, padding=p)),
     "fwd_eigen": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNative(input=x, filter=w, strides=st, padding="EXPLICIT", explicit_paddings=ep)),
     "din_onednn": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropInput(input_sizes=xs, filter=w, out_backprop=dy, strides=st, padding=p)),
     "din_eigen": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropInput(input_sizes=xs, filter=w, out_backprop=dy, strides=st, padding="EXPLICIT", explicit_paddings=ep)),
     "dw_onednn": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(input=x, filter_sizes=fs, out_backprop=dy, strides=st, padding=p)),
     "dw_eigen": tf.function(lambda: tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(input=x, filter_sizes=fs, out_backprop=dy, strides=st, padding="EXPLICIT", explicit_paddings=ep)),
    }
    outs = {n: f().numpy() for n,f in fns.items()}
    for a in ("fwd","din","dw"):
        r = outs[a+"_eigen"]; e = np.abs(outs[a+"_onednn"]-r).max()/np.abs(r).max(); assert e < 1e-4, (a, e)
    times = {n: [] for n in fns}
    for r in range(7):
        for n,f in fns.items():
            t0=time.perf_counter(); f(); times[n].append(time.perf_counter()-t0)
    med = {n: statistics.median(v)*1e3 for n,v in times.items()}
    for n in med: tot[n] = tot.get(n,0)+cnt*med[n]
    print(f"{H}x{H}x{C} k{k} s{s} {p} x{cnt}: " + "  ".join(f"{n} {med[n]:.2f}" for n in fns), flush=True)
print("total ms", {n: round(v,1) for n,v in tot.items()})
