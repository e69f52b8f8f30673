"""Accuracy benchmark: the documented ResNet-50 trained from scratch on the sign-language digits,
whole photographers held out (15%, seed 0). Not a test: it takes ~20-40 minutes on 2 CPU cores.

    nice .venv/bin/python bench/accuracy.py            # 10 classes, then the 6-class (0-5) subset
    nice .venv/bin/python bench/accuracy.py --only 10

Each run is `python cli.py train bench/specs/resnet50_signs.yaml ...` (architectures/resnet50.yaml
with only `training:` set) into runs/bench-accuracy-<N>; its curves and confusion matrix are copied
to bench/accuracy-<N>class-*.png and a summary to bench/accuracy-<N>class.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "datasets" / "sign-language-digits" / "images"
SPEC = ROOT / "bench" / "specs" / "resnet50_signs.yaml"
SUBSETS = {"10": None, "6": "0,1,2,3,4,5"}


def run(classes: str) -> dict:
    out = ROOT / "runs" / f"bench-accuracy-{classes}"
    if out.exists():
        shutil.rmtree(out)
    command = [
        sys.executable, "cli.py", "train", str(SPEC.relative_to(ROOT)),
        "--data", "../shared/datasets/sign-language-digits/images",
        "--holdout-photographers", "0.15", "--out", str(out.relative_to(ROOT)), "--quiet",
    ]
    if SUBSETS[classes]:
        command += ["--classes", SUBSETS[classes]]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "state.json").read_text())["history"]
    for name in ("curves", "confusion_matrix"):
        shutil.copyfile(out / f"{name}.png", ROOT / "bench" / f"accuracy-{classes}class-{name}.png")
    summary = {
        "command": " ".join(command[1:]),
        "classes": classes,
        "wall_seconds": round(wall, 1),
        "training_seconds": metrics["training_seconds"],
        "test": {k: metrics["evaluation"][k] for k in ("images", "loss", "accuracy")},
        "evaluated_on": metrics["evaluated_on"],
        "best_epoch": metrics["best"]["epoch"],
        "median_images_per_second": metrics["median_images_per_second"],
        "test_accuracy_by_epoch": [
            {"epoch": r["epoch"], "minutes": round(sum(h["seconds"] for h in history[: r["epoch"]]) / 60, 1),
             "test_accuracy": r.get("test_accuracy")}
            for r in history
        ],
        "confusion_matrix": metrics["evaluation"]["confusion_matrix"],
    }
    (ROOT / "bench" / f"accuracy-{classes}class.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("classes", "wall_seconds", "training_seconds", "test")}), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SUBSETS), help="Run one of the two benchmarks.")
    args = parser.parse_args()
    for classes in [args.only] if args.only else ["10", "6"]:
        run(classes)


if __name__ == "__main__":
    main()
