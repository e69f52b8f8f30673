"""`cli.py train`'s first step with some of grappler's passes off, against all on, alternating.

    .venv/bin/python bench/first_step_passes.py [--network convnext_tiny] [--rounds 2] \
        [--off constant_folding,arithmetic_optimization,...]

Each run is bench/zoo_speed.py's own (`cli.py train architectures/imagenet/NETWORK.yaml` on 192
sign photos in 10 class folders, one epoch of 6 steps of 32, an empty kernel cache), in its own
process; the "off" arm first sets `tf.config.optimizer.set_experimental_options` to turn the
named passes off (OFF below by default: every pass but the remapper's fusions and function
inlining). Prints one JSON line per run: the first step's end after train's "training ..." line,
the median step (state.json) and their difference, the first step's extra time as zoo_speed
counts it. A pass turned off may also slow every later step, so the step's speed is printed
beside the first step's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFF = ("constant_folding", "arithmetic_optimization", "dependency_optimization", "loop_optimization",
       "shape_optimization", "layout_optimizer", "debug_stripper", "implementation_selector",
       "pin_to_host_optimization")


def run(network: str, off: tuple[str, ...], work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from bench.zoo_speed import make_folder

    folder = work / "images"
    if not folder.exists():
        make_folder(folder, 192)
    out = work / f"run-{time.monotonic_ns()}"
    argv = ["cli.py", "train", f"architectures/imagenet/{network}.yaml", "--data", str(folder), "--epochs", "1",
            "--batch-size", "32", "--out", str(out)]
    options = {name: False for name in off}
    code = ("import sys, runpy\n"
            "from archbuilder.runtime import configure_tensorflow_environment\n"
            "configure_tensorflow_environment()\n"
            "import tensorflow as tf\n"
            f"tf.config.optimizer.set_experimental_options({options!r})\n"
            f"sys.argv = {argv!r}\n"
            "runpy.run_path('cli.py', run_name='__main__')\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "ARCHBUILDER_CACHE_DIR": str(out.with_name(out.name + "-cache"))}
    start = time.time()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = [(time.time() - start, line.rstrip()) for line in process.stdout]
    if process.wait() != 0:
        raise RuntimeError("\n".join(text for _, text in lines[-20:]))
    began = next(t for t, text in lines if text.startswith("training ") and " images" in text)
    ready = next(t for t, text in lines if text.startswith("graph ready"))
    images_per_second = json.loads((out / "state.json").read_text())["history"][0]["images_per_second"]
    step = 32 / images_per_second
    return {"network": network, "passes_off": list(off), "first_step_end_s": round(ready - began, 1),
            "step_s": round(step, 2), "first_step_extra_s": round(ready - began - step, 1),
            "images_per_second": images_per_second, "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="convnext_tiny")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--off", default=",".join(OFF), help="grappler option names to set False")
    args = parser.parse_args()
    off = tuple(name for name in args.off.split(",") if name)
    with tempfile.TemporaryDirectory(prefix="first-step-passes-") as work:
        for _ in range(args.rounds):
            for arm in ((), off):
                print(json.dumps(run(args.network, arm, Path(work))), flush=True)


if __name__ == "__main__":
    main()
