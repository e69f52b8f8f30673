"""Training speed of one spec on one device, on 2 logical CPUs (mirrored), and as 2 workers
(multi-worker on 127.0.0.1), and in float32 vs mixed precision, interleaved, on real photos.

    .venv/bin/python bench/train_distributed.py [--spec architectures/resnet18.yaml] [--per-class 16]
        [--epochs 2] [--rounds 2] [--configs none,mirrored2,workers2,bf16]

Each configuration is `python cli.py train SPEC --data FOLDER --epochs E` in its own processes
(two for `workers2`), run one after another, round after round, so that the machine's load hits
them alike. Images/s is the history's `images_per_second` (global batch / median step seconds,
first step of each process excluded), the median over the epochs of all rounds; for `workers2`
the chief's (its steps are the cluster's steps). Prints one JSON line per run and a summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CONFIGS = {
    "none": (["--distribute", "none"], 1),
    "mirrored2": (["--distribute", "mirrored", "--devices", "2"], 1),
    "workers2": (["--distribute", "multi-worker"], 2),
    "bf16": (["--distribute", "none", "--set", "training.precision=mixed_bfloat16"], 1),
    "fp16": (["--distribute", "none", "--set", "training.precision=mixed_float16"], 1),
}


def run(name: str, spec: str, photos: Path, epochs: int, folder: Path) -> dict:
    extra, processes = CONFIGS[name]
    out = folder / f"{name}-{time.monotonic_ns()}"
    command = [sys.executable, str(ROOT / "cli.py"), "train", spec, "--data", str(photos), "--epochs", str(epochs),
               "--out", str(out), "--quiet", *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    from train_support import free_ports

    ports = free_ports(processes)
    started = time.monotonic()
    children = []
    for index in range(processes):
        child_env = dict(env)
        if processes > 1:
            child_env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                 "task": {"type": "worker", "index": index}})
        children.append(subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True))
    errors = [child.communicate(timeout=3600)[1] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit(f"{name} failed:\n" + "\n".join(e[-2000:] for e in errors))
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {"config": name, "seconds": round(time.monotonic() - started, 1),
            "images_per_second": [float(r["images_per_second"]) for r in rows if r.get("images_per_second")]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default="architectures/resnet18.yaml")
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", default="none,mirrored2,workers2,bf16")
    args = parser.parse_args()
    from train_support import image_folder

    names = args.configs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        photos = image_folder(Path(tmp) / "photos", classes=tuple(str(d) for d in range(10)), per_class=args.per_class)
        speeds: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                result = run(name, args.spec, photos, args.epochs, Path(tmp))
                print(json.dumps(result), flush=True)
                speeds[name] += result["images_per_second"]
    base = statistics.median(speeds[names[0]])
    for name in names:
        median = statistics.median(speeds[name])
        print(f"{name:10s} median {median:8.2f} images/s  x{median / base:.2f} vs {names[0]}")


if __name__ == "__main__":
    main()
