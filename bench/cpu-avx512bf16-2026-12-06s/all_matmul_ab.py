"""One-off (seventeenth session, Zen 4): whole training steps of a zoo network as `train` switches it
(bench/fused_kernels.py `switch_as_train`: the timed per-shape choices from the user's cache)
against the same with *every* 1x1 convolution (and separable 1x1 half) a matrix product, whatever
the timing said; steps alternate on one random batch (alternating_steps), first two dropped.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/all_matmul_ab.py efficientnet_b0 32 20
"""
import sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from bench.fused_kernels import alternating_steps, grouped_on_native, make, step_medians, switch_as_train
from archbuilder.training.pointwise_choice import POINTWISE, SEPARABLE
from archbuilder.training.depthwise_choice import DEPTHWISE_GRADIENT
from archbuilder.training.fused_padding import use_folded_padding
from archbuilder.training.winograd_choice import WINOGRAD
net, batch, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a = make(net, []); switch_as_train(a, batch)
b = make(net, []); grouped_on_native(b)  # switch_as_train's order, the 1x1 choices forced
WINOGRAD.switch_where_faster(b, batch, lambda m: None)
for sw in (POINTWISE, SEPARABLE):
    names = {l.name for l in b._flatten_layers(include_self=False) if sw.candidate(l)}
    print(sw.cache_name, "all", len(sw.switch(b, names)))
DEPTHWISE_GRADIENT.switch_where_faster(b, batch, lambda m: None)
use_folded_padding(b)
b.set_weights(a.get_weights())
times = alternating_steps({"timed": a, "allmm": b}, batch, count)
med, ratios = step_medians(times, "timed")
print(net, med, {k: round(v, 3) for k, v in ratios.items()})
