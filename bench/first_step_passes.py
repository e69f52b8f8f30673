"""`cli.py train`'s first step with some of grappler's passes off, against all on, alternating.

    .venv/bin/python bench/first_step_passes.py [--network convnext_tiny] [--rounds 2] \
        [--off constant_folding,arithmetic_optimization,...]

Each run is bench/zoo_speed.py's own (`cli.py train architectures/imagenet/NETWORK.yaml` on 192
sign photos in 10 class folders, one epoch of 6 steps of 32, an empty kernel cache), in its own
process; the "off" arm first runs a Python prelude there (zoo_speed's `ours`) that sets
`tf.config.optimizer.set_experimental_options` to turn the passes named by --off off (OFF below
by default: every pass but the remapper's fusions and function inlining).

Prints one JSON line per run: zoo_speed's figures (the first step's extra time as it counts it,
images per second, CPU seconds, the end). A change may also slow every later step, so the step's
speed is printed beside the first step's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.zoo_speed import make_folder, ours  # noqa: E402

OFF = ("constant_folding", "arithmetic_optimization", "dependency_optimization", "loop_optimization",
       "shape_optimization", "layout_optimizer", "debug_stripper", "implementation_selector",
       "pin_to_host_optimization")
PRELUDE = "from archbuilder.runtime import configure_tensorflow_environment\nconfigure_tensorflow_environment()\n"


def prelude(off: tuple[str, ...]) -> str:
    options = {name: False for name in off}
    return PRELUDE + f"import tensorflow as tf\ntf.config.optimizer.set_experimental_options({options!r})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="convnext_tiny")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--off", default=",".join(OFF), help="grappler option names to set False")
    args = parser.parse_args()
    off = tuple(name for name in args.off.split(",") if name)
    settings = types.SimpleNamespace(batch=32, size=0, steps=6, warm_cache=False)
    with tempfile.TemporaryDirectory(prefix="first-step-ab-") as work:
        folder = make_folder(Path(work) / "images", settings.batch * settings.steps)
        for round_ in range(args.rounds):
            arms = (("all passes", ""), ("passes off", prelude(off)))
            for arm, code in arms if round_ % 2 == 0 else arms[::-1]:
                row = ours(args.network, folder, Path(work), settings, prelude=code)
                del row["kernel_timing"], row["switches"]
                print(json.dumps({"network": args.network, "arm": arm, "round": round_ + 1, **row,
                                  "load": round(os.getloadavg()[0], 1)}), flush=True)


if __name__ == "__main__":
    main()
