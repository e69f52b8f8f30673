"""Accuracy of a trained model's LiteRT exports on the photographers its run held out, next to
Keras float32's: what `export --check` prints, for float32, float16 and int8 in one table.

    .venv/bin/python bench/quantized_accuracy.py RUN_FOLDER [--calibration-photos 200]

RUN_FOLDER is a `train --holdout-photographers F` run (its run.json names the data, the fraction
and the seed). The split is rebuilt with train's own functions, so the held-out photographers are
exactly those the run never trained on; they become a class folder of symlinks for `--check`, and
the training photographers one for int8's `--calibration`. Each export runs as a real
`cli.py export` process; its "Accuracy on ..." line is parsed and tabulated.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINE = re.compile(r"Accuracy on (\d+) images of .*: Keras float32 ([\d.]+)%, LiteRT (\w+) ([\d.]+)% \(([+-][\d.]+) points\)")


def split_folders(run: dict, root: Path) -> tuple[Path, Path]:
    """(training photographers, held-out photographers) of the run, as class folders of symlinks."""
    from archbuilder.data.sources import folder_split
    from tests.train_support import link_split

    classes = tuple(run["classes_filter"]) if run["classes_filter"] else None
    split = folder_split(run["data"], tuple(run["input_shape"]), classes, run.get("skip_bad_images", False),
                         run["holdout_photographers"], run["training"]["seed"])
    return link_split(split, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    if not run.get("holdout_photographers"):
        raise SystemExit(f"{args.run}: not a --holdout-photographers run")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        train, heldout = split_folders(run, Path(folder))
        for quantize in ("float32", "float16", "int8"):
            out = Path(folder) / f"model-{quantize}.tflite"
            command = [sys.executable, "cli.py", "export", str(args.run / "best.keras"), "--format", "litert",
                       "--out", str(out), "--check", str(heldout)]
            if quantize != "float32":
                command += ["--quantize", quantize]
            if quantize == "int8":
                command += ["--calibration", str(train)]
            print("$", " ".join(command[1:]), flush=True)
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            print(result.stdout, result.stderr[-2000:] if result.returncode else "", flush=True)
            match = LINE.search(result.stdout)
            if result.returncode or not match:
                raise SystemExit(f"export {quantize} failed (exit {result.returncode})")
            images, keras_accuracy, kind, accuracy, delta = match.groups()
            rows.append((quantize, images, keras_accuracy, accuracy, delta, out.stat().st_size))
    print(f"\n{args.run}: {rows[0][1]} images of the held-out photographers")
    print("| LiteRT export | size | accuracy | vs Keras float32 |")
    print("|---|---|---|---|")
    print(f"| (Keras float32) | | {rows[0][2]}% | |")
    for quantize, _, _, accuracy, delta, size in rows:
        print(f"| {quantize} | {size / 2**20:.1f} MiB | {accuracy}% | {delta} points |")


if __name__ == "__main__":
    main()
