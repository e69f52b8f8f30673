"""The training pipeline's tf.data options (data/pipeline.py `_training_options`), A/B in one run.

    .venv/bin/python bench/pipeline_options.py [--config stream|records] [--images 640] [--rounds 4]

The same epoch as bench/input_speed.py's `stream` (or `records`) configuration: generated 1024x768
JPEGs -> decode, resize to 224x224, the recipe's augmentation -> batches of 32, images/s after the
first batch, each arm in its own process, the arms' order alternating from round to round:

  defaults       tf.data's own options (autotuning on, each op split across the cores)
  autotune-off   autotuning off only
  chosen         `_training_options` as committed (autotuning off, one thread per op)

Prints each arm's runs and median, and the medians' ratios to `defaults`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("defaults", "autotune-off", "chosen")


def _worker(arm: str, config: str, folder: Path) -> float:
    sys.path.insert(0, str(ROOT))
    from archbuilder.runtime import configure_tensorflow_environment

    configure_tensorflow_environment()
    import tensorflow as tf

    from archbuilder.data import pipeline
    from bench import input_speed

    if arm == "defaults":
        pipeline._training_options = lambda dataset: dataset
    elif arm == "autotune-off":
        def autotune_off(dataset):
            options = tf.data.Options()
            options.autotune.enabled = False
            return dataset.with_options(options)

        pipeline._training_options = autotune_off
    return input_speed._worker(config, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("stream", "records"), default="stream")
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--worker")
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(_worker(args.worker, args.config, args.folder))
        return
    sys.path.insert(0, str(ROOT))
    from bench import input_speed

    with tempfile.TemporaryDirectory(prefix="pipeline-options-") as work:
        folder = Path(work) / "images"
        input_speed.generate(folder, args.images)
        if args.config == "records":
            input_speed._pack(folder)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        runs: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for round_ in range(args.rounds):
            for arm in ARMS if round_ % 2 == 0 else ARMS[::-1]:
                done = subprocess.run([sys.executable, __file__, "--worker", arm, "--config", args.config,
                                       "--folder", str(folder)], check=True, capture_output=True, text=True, env=env)
                runs[arm].append(round(float(done.stdout.strip().splitlines()[-1]), 1))
        medians = {arm: statistics.median(values) for arm, values in runs.items()}
        for arm in ARMS:
            print(json.dumps({"config": args.config, "arm": arm, "images_per_second": round(medians[arm], 1), "runs": runs[arm],
                              "vs_defaults": round(medians[arm] / medians["defaults"], 3)}))


if __name__ == "__main__":
    main()
