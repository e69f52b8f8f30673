"""Whole training steps with and without the kernels `train` switches per shape by timing: 1x1
convolutions and separable convolutions' 1x1 halves as matrix products (pointwise_choice.py) and
TensorFlow's own depthwise kernel gradient (depthwise_choice.py).

    .venv/bin/python bench/timed_switches.py [--networks efficientnet_b0,mobilenetv2] [--batch 32]
        [--steps 10] [--variants none,pointwise,depthwise,both]

For each network (architectures/imagenet/NAME.yaml, 10 classes, the switches `train` makes on
every CPU: bench/fused_kernels.py `make`, grouped convolutions on `native`), four models with the
same weights: `none` (neither switch), `pointwise`, `depthwise` and `both`, each switch deciding
per shape as `train` does, from the cache or by timing now (without `train`'s per-run budget: every
shape is decided). Steps alternate on one random batch, first two dropped; median steps and the
median per-round ratio to `none`. The decisions are printed as `train` says them.
bench/RESULTS.md has the figures; the CPU and `uptime`'s load are printed first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fused_kernels import (  # noqa: E402  (sets TensorFlow's environment first)
    add_step_arguments, alternating_steps, cpu_line, grouped_on_native, make, parse_step_arguments, step_medians,
)
from archbuilder.training.depthwise_choice import DEPTHWISE_GRADIENT  # noqa: E402
from archbuilder.training.pointwise_choice import POINTWISE, SEPARABLE  # noqa: E402

VARIANTS = {"none": (), "pointwise": (POINTWISE, SEPARABLE), "depthwise": (DEPTHWISE_GRADIENT,),
            "both": (POINTWISE, SEPARABLE, DEPTHWISE_GRADIENT)}


def steps(network: str, batch: int, count: int, variants) -> str:
    """The table row of `network` (`variants` of VARIANTS, "none" first); prints the decisions first."""
    models, switched = {}, {}
    for variant in variants:
        switches = VARIANTS[variant]
        model = make(network, [])
        grouped_on_native(model)
        said = []
        for switch in switches:
            choice = switch.switch_where_faster(model, batch, said.append if variant != "both" else lambda message: None)
            switched[variant] = switched.get(variant, 0) + (len(choice.switched) if choice else 0)
        if said:
            print("\n".join(said), flush=True)
        if models:
            model.set_weights(models["none"].get_weights())
        models[variant] = model
    times = alternating_steps(models, batch, count)
    medians, ratios = step_medians(times, "none")
    return (f"| {network} | {batch} | {switched.get('pointwise', 0)} / {switched.get('depthwise', 0)} | "
            + " | ".join(f"{medians[v]} s" if v in medians else "" for v in VARIANTS) + " | "
            + " | ".join(f"{ratios[v]:.3f}" if v in ratios else "" for v in VARIANTS if v != "none") + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, "efficientnet_b0,efficientnet_b1,mobilenetv2")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="which of none, pointwise, depthwise, both (none is always run: the baseline)")
    args = parse_step_arguments(parser)
    variants = ["none", *(v for v in args.variants.split(",") if v != "none")]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"no such variant: {', '.join(sorted(unknown))} (known: {', '.join(VARIANTS)})")
    print(cpu_line(), flush=True)
    rows = [steps(network, args.batch, args.steps, variants) for network in filter(None, args.networks.split(","))]
    print("\n| network | batch | layers switched: 1x1 / depthwise | step: none | pointwise | depthwise | both | "
          "none / pointwise | none / depthwise | none / both |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
