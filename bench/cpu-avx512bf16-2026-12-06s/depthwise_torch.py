"""One-off (seventeenth session, Zen 4): depthwise_tf.py's shapes in PyTorch (channels_last,
memory kept as bench/peers/malloc.py `keep`): forward, input gradient, kernel gradient and both
gradients in one call (`aten::convolution_backward`, what autograd runs); medians of 7.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/depthwise_torch.py
"""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from bench.peers import malloc
malloc.restart_with("keep")
import torch
SHAPES = [(112,32,3,1,"SAME"),(113,96,3,2,"VALID"),(56,144,3,1,"SAME"),(59,144,5,2,"VALID"),(28,240,5,1,"SAME"),(29,240,3,2,"VALID"),
          (14,480,3,1,"SAME"),(14,480,5,1,"SAME"),(14,672,5,1,"SAME"),(17,672,5,2,"VALID"),(7,1152,5,1,"SAME"),(7,1152,3,1,"SAME")]
COUNT = [1,1,1,1,1,1,2,1,2,1,3,1]
B=32; tot={}
for (H,C,k,s,p),cnt in zip(SHAPES,COUNT):
    pad = 0 if p=="VALID" else k//2
    x = torch.randn(B,C,H,H).contiguous(memory_format=torch.channels_last)
    w = torch.randn(C,1,k,k)
    y = torch.nn.functional.conv2d(x,w,stride=s,padding=pad,groups=C)
    dy = torch.randn_like(y)
    def fwd(): return torch.nn.functional.conv2d(x,w,stride=s,padding=pad,groups=C)
    def both(): return torch.ops.aten.convolution_backward(dy, x, w, None, [s,s],[pad,pad],[1,1],False,[0,0],C,[True,True,False])
    def din(): return torch.ops.aten.convolution_backward(dy, x, w, None, [s,s],[pad,pad],[1,1],False,[0,0],C,[True,False,False])
    def dw(): return torch.ops.aten.convolution_backward(dy, x, w, None, [s,s],[pad,pad],[1,1],False,[0,0],C,[False,True,False])
    fns={"fwd":fwd,"din":din,"dw":dw,"both":both}
    times={n:[] for n in fns}
    for n,f in fns.items(): f()
    for r in range(7):
        for n,f in fns.items():
            t0=time.perf_counter(); f(); times[n].append(time.perf_counter()-t0)
    med={n:statistics.median(v)*1e3 for n,v in times.items()}
    for n in med: tot[n]=tot.get(n,0)+cnt*med[n]
    print(f"{H}x{H}x{C} k{k} s{s} {p} x{cnt}: "+"  ".join(f"{n} {med[n]:.2f}" for n in fns), flush=True)
print("total ms", {n: round(v,1) for n,v in tot.items()})
