"""What tf.data's autotuning thread costs when an iterator is deleted (data/dataset_options.py).

    .venv/bin/python bench/iterator_join.py [--rounds 5] [--spec architectures/imagenet/resnet50_keras.yaml]
        [--size 224] [--images 32]

Two measurements, each with the autotuning thread (`on`, tf.data's default) and without (`off`,
what archbuilder's pipelines run), alternating arm by arm in one process:

  load      the 1,762 sign photos decoded at 64x64 through load_image_files' own map function:
            seconds to iterate every batch, then seconds to delete the iterator (the join)
  predict   `predict_probabilities` (the test set after each epoch, the end of `train`,
            `evaluate`) over --images random images with --spec's model: wall seconds of the
            whole call, and the process's CPU seconds over wall seconds (2.0 on two busy cores;
            a join shows as wall time with the cores idle)

Medians per arm at the end, and how many calls had idle cores (under 1.5 of 2) or a
deletion over 0.05 s: the join happens only when the thread is asleep at that moment. The first
line gives the CPU model and `uptime`'s load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHOTOS = ROOT / ".." / "shared" / "datasets" / "sign-language-digits" / "images"


def _autotune(dataset, on: bool):
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = on
    return dataset.with_options(options)


def _load(tf, on: bool) -> dict:
    from archbuilder.data.exif import exif_orientation
    from archbuilder.data.images import _file_decoder, _file_names, max_image_pixels

    names = _file_names(sorted(p for p in PHOTOS.rglob("*") if p.is_file()))
    orientations = [exif_orientation(name) for name in names]
    dataset = (tf.data.Dataset.from_tensor_slices((tf.constant(names), tf.constant(orientations, tf.int32)))
               .map(_file_decoder(64, 64, 3, max_image_pixels()), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256))
    start = time.perf_counter()
    iterator = iter(_autotune(dataset, on))
    count = sum(len(batch) for batch in iterator)
    iterated = time.perf_counter()
    del iterator
    return {"images": count, "iterate_s": round(iterated - start, 3), "delete_s": round(time.perf_counter() - iterated, 3)}


def _predict(model, images, on: bool) -> dict:
    from archbuilder.data import pipeline
    from archbuilder.training.metrics import predict_probabilities

    ours = pipeline.inference_dataset
    pipeline.inference_dataset = lambda x, batch_size: _autotune(ours(x, batch_size), on)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        predict_probabilities(model, images)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        pipeline.inference_dataset = ours
    return {"wall_s": round(wall, 2), "cores": round(cpu / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spec", default=str(ROOT / "architectures" / "imagenet" / "resnet50_keras.yaml"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    model_name = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in model_name.splitlines() if line.startswith("Model name")), "?")
    print(f"# CPU: {model_name}; load: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)

    from archbuilder.runtime import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    import numpy as np

    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec
    from archbuilder.training.first_step import trace_prediction_once

    model = build_model(load_checked_spec(Path(args.spec), ["classes=10", f"input.shape=[{args.size}, {args.size}, 3]"]).spec)
    images = np.random.default_rng(0).integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    trace_prediction_once(model, tf.TensorSpec((None, args.size, args.size, 3)))
    _predict(model, images[:2], True)  # the first call's one-off work, in neither arm
    rows = {"on": [], "off": []}
    for round_ in range(args.rounds):
        for arm in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
            row = {"round": round_ + 1, "arm": arm, "load": _load(tf, arm == "on"),
                   "predict": _predict(model, images, arm == "on")}
            rows[arm].append(row)
            print(json.dumps(row), flush=True)
    summary = {arm: {"load_delete_s": statistics.median(r["load"]["delete_s"] for r in arm_rows),
                     "load_iterate_s": statistics.median(r["load"]["iterate_s"] for r in arm_rows),
                     "predict_wall_s": statistics.median(r["predict"]["wall_s"] for r in arm_rows),
                     "predict_wall_max_s": max(r["predict"]["wall_s"] for r in arm_rows),
                     "predict_cores": statistics.median(r["predict"]["cores"] for r in arm_rows),
                     # calls whose cores were idle for a quarter of their time or more
                     "predict_calls_under_1_5_cores": sum(r["predict"]["cores"] < 1.5 for r in arm_rows),
                     "loads_deleted_in_over_0_05_s": sum(r["load"]["delete_s"] > 0.05 for r in arm_rows)}
               for arm, arm_rows in rows.items()}
    print(json.dumps({"medians": summary}, indent=1))
    print(f"# load: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
