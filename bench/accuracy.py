"""Accuracy benchmark: the documented ResNet-50 trained from scratch on the sign-language digits,
whole photographers held out (15%, seed 0). Not a test: it takes ~20-40 minutes on 2 CPU cores.

    nice .venv/bin/python bench/accuracy.py            # 10 classes, then the 6-class (0-5) subset
    nice .venv/bin/python bench/accuracy.py --only 10
    nice .venv/bin/python bench/accuracy.py --only 10 --spec architectures/recipes/resnet50_signs_fast.yaml --seed 1

Each run is `python cli.py train SPEC ...` (default bench/specs/resnet50_signs.yaml:
architectures/resnet50.yaml with only `training:` set) into runs/bench-accuracy-<N>; its curves and
confusion matrix are copied to bench/<name>-*.png and a summary to bench/<name>.json, where <name>
is accuracy-<N>class for the default spec and accuracy-<spec file stem>-<N>class-seed<S> otherwise.

Time to accuracy: the minutes of training until the held-out test accuracy first reaches
--target (99%; on 273 test images that is 271 right), or "not reached". Minutes of training are
the sum of the epochs' `seconds` in the run's history: each epoch's training steps (the first
includes tracing the graph) and, where the spec asks, recomputing BatchNorm's statistics; not the
per-epoch test evaluation, not start-up, not the final evaluation. The same sum of the epochs' CPU
seconds (the process's, all threads) is reported beside it, and the CPU seconds of the whole
process, and the machine's load average sampled during the run: on a shared machine wall
minutes under load overstate the quiet figure, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "datasets" / "sign-language-digits" / "images"
SPEC = ROOT / "bench" / "specs" / "resnet50_signs.yaml"
SUBSETS = {"10": None, "6": "0,1,2,3,4,5"}


def time_to_accuracy(history: list[dict], target: float) -> dict:
    """The first epoch whose test accuracy reaches `target`, with the training seconds and CPU
    seconds of the epochs up to and including it; None where no epoch reaches it."""
    seconds = cpu = 0.0
    for row in history:
        seconds += row["seconds"]
        cpu += row.get("cpu_seconds", float("nan"))  # absent in runs made before the column existed
        if (row.get("test_accuracy") or 0.0) >= target:
            return {"epoch": row["epoch"], "minutes": round(seconds / 60, 2), "cpu_seconds": round(cpu, 1)}
    return None


class LoadSampler:
    """The 1-minute load average every `every` seconds, in a thread, while a run goes on."""

    def __init__(self, every: float = 15.0):
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, args=(every,), daemon=True)

    def _sample(self, every: float) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self.stop.wait(every):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def summary(self) -> dict:
        ordered = sorted(self.samples)
        return {"median": ordered[len(ordered) // 2], "min": ordered[0], "max": ordered[-1], "samples": len(ordered)}


def run(classes: str, spec: Path, seed: int | None, overrides: list[str], target: float, tag: str | None) -> dict:
    default = spec.resolve() == SPEC and seed is None and not overrides and not tag
    name = f"accuracy-{classes}class" if default else (
        f"accuracy-{tag or spec.stem}-{classes}class" + (f"-seed{seed}" if seed is not None else ""))
    out = ROOT / "runs" / (f"bench-accuracy-{classes}" if default else f"bench-{name}")
    if out.exists():
        shutil.rmtree(out)
    command = [
        sys.executable, "cli.py", "train", os.path.relpath(spec, ROOT),
        "--data", "../shared/datasets/sign-language-digits/images",
        "--holdout-photographers", "0.15", "--out", str(out.relative_to(ROOT)), "--quiet",
    ]
    if SUBSETS[classes]:
        command += ["--classes", SUBSETS[classes]]
    for override in ([f"training.seed={seed}"] if seed is not None else []) + overrides:
        command += ["--set", override]
    print("$", " ".join(command), flush=True)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with LoadSampler() as load:
        subprocess.run(command, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run.json").read_text())
    history = json.loads((out / "state.json").read_text())["history"]
    for picture in ("curves", "confusion_matrix"):
        shutil.copyfile(out / f"{picture}.png", ROOT / "bench" / f"{name}-{picture}.png")
    reached = time_to_accuracy(history, target)
    summary = {
        "command": " ".join(command[1:]),
        "classes": classes,
        "seed": info["training"]["seed"],
        "training": info["training"],
        "wall_seconds": round(wall, 1),
        "training_seconds": metrics["training_seconds"],
        "training_cpu_seconds": round(sum(r.get("cpu_seconds", float("nan")) for r in history), 1),
        "process_cpu_seconds": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1),
        "load_average_1min": load.summary(),
        "target": target,
        "time_to_target": reached if reached else "not reached",
        "best_test_accuracy": max((r.get("test_accuracy") or 0.0) for r in history),
        "test": {k: metrics["evaluation"][k] for k in ("images", "loss", "accuracy")},
        "evaluated_on": metrics["evaluated_on"],
        "best_epoch": metrics["best"]["epoch"],
        "median_images_per_second": metrics["median_images_per_second"],
        "test_accuracy_by_epoch": [
            {"epoch": r["epoch"], "minutes": round(sum(h["seconds"] for h in history[: r["epoch"]]) / 60, 1),
             "cpu_seconds": r.get("cpu_seconds"), "accuracy": r.get("accuracy"), "test_accuracy": r.get("test_accuracy")}
            for r in history
        ],
        "confusion_matrix": metrics["evaluation"]["confusion_matrix"],
    }
    (ROOT / "bench" / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("classes", "seed", "wall_seconds", "training_seconds", "training_cpu_seconds",
                                              "process_cpu_seconds", "load_average_1min", "time_to_target",
                                              "best_test_accuracy", "test")}), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SUBSETS), help="Run one of the two benchmarks.")
    parser.add_argument("--spec", type=Path, default=SPEC, help="The spec to train (default: %(default)s).")
    parser.add_argument("--seed", type=int, help="Shorthand for --set training.seed=N.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Passed to train --set (repeatable).")
    parser.add_argument("--tag", help="Names the outputs accuracy-TAG-<N>class[-seedS] (default: the spec's file stem).")
    parser.add_argument("--target", type=float, default=0.99, help="Test accuracy to time (default: %(default)s).")
    args = parser.parse_args()
    if not args.spec.is_file():
        parser.error(f"--spec {args.spec}: no such file")
    for classes in [args.only] if args.only else ["10", "6"]:
        run(classes, args.spec.resolve(), args.seed, args.overrides, args.target, args.tag)


if __name__ == "__main__":
    main()
