"""One-off (seventeenth session, Zen 4): pointwise_tf.py's shapes in PyTorch (channels_last, memory
kept): forward, input gradient, kernel gradient; medians of 7.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/pointwise_torch.py
"""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from bench.peers import malloc
malloc.restart_with("keep")
import torch
B=32
S=[(112,32,16,1),(112,16,96,1),(56,96,24,1),(56,24,144,2),(56,144,24,1),(28,144,40,1),(28,40,240,2),(28,240,40,1),(14,240,80,1),(14,80,480,3),(14,480,80,2),(14,480,112,1),(14,112,672,3),(14,672,112,2),(7,672,192,1),(7,192,1152,4),(7,1152,192,3),(7,1152,320,1),(7,320,1280,1)]
tot={}
for H,ci,co,cnt in S:
    x=torch.randn(B,ci,H,H).contiguous(memory_format=torch.channels_last); w=torch.randn(co,ci,1,1).contiguous(memory_format=torch.channels_last)
    dy=torch.randn(B,co,H,H).contiguous(memory_format=torch.channels_last)
    fns={"fwd": lambda: torch.nn.functional.conv2d(x,w),
         "din": lambda: torch.ops.aten.convolution_backward(dy,x,w,None,[1,1],[0,0],[1,1],False,[0,0],1,[True,False,False]),
         "dw": lambda: torch.ops.aten.convolution_backward(dy,x,w,None,[1,1],[0,0],[1,1],False,[0,0],1,[False,True,False])}
    for f in fns.values(): f(); f()
    times={n:[] for n in fns}
    for r in range(7):
        for n,f in fns.items():
            t0=time.perf_counter(); f(); times[n].append(time.perf_counter()-t0)
    med={n:statistics.median(v)*1e3 for n,v in times.items()}
    for n in med: tot[n]=tot.get(n,0)+cnt*med[n]
    print(f"{H}x{H} {ci}->{co} x{cnt}: "+"  ".join(f"{n} {med[n]:.2f}" for n in fns), flush=True)
print("total", {n: round(v,1) for n,v in tot.items()})
