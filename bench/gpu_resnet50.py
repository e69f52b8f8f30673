"""ResNet-50 training speed on GPUs: 64x64 and 224x224, float32 and mixed precision, and mirrored
scaling over every GPU of the machine. NOT RUN YET: no GPU machine was lent (bench/RESULTS.md).

    .venv/bin/python bench/gpu_resnet50.py [--steps 30] [--batch 64] [--json OUT.json]

Builds `architectures/resnet50.yaml` (64x64x3) and `architectures/imagenet/resnet50.yaml`
(224x224x3) with archbuilder's builder, compiles them as `train` does (training/optimizers.py), and
fits synthetic uint8 images through archbuilder's own input pipeline (nothing is downloaded).
Images/s = global batch / median step seconds, steps after the first 5 (tracing, autotuning).
Configurations, per size: float32 and mixed_float16 (and mixed_bfloat16 where the GPU has bf16)
on one GPU; then, with several GPUs, the same over all of them with MirroredStrategy at
batch x GPUs (the per-GPU batch is kept), so the ratio to one GPU is the scaling. Prints the
card's name with every line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archbuilder.runtime import import_tensorflow_quietly  # noqa: E402

tf = import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from archbuilder.data import pipeline  # noqa: E402
from archbuilder.keras.graph import build_model  # noqa: E402
from archbuilder.spec.training import TrainingSpec  # noqa: E402
from archbuilder.spec.validate import load_checked_spec  # noqa: E402
from archbuilder.training.optimizers import compile_model  # noqa: E402
from archbuilder.training.precision import precision_policy  # noqa: E402

SPECS = {64: "architectures/resnet50.yaml", 224: "architectures/imagenet/resnet50.yaml"}
WARMUP = 5


class _StepTimes(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.start)

    def on_train_begin(self, logs=None):
        self.times = []


def measure(size: int, precision: str, gpus: int, batch: int, steps: int) -> float:
    spec = load_checked_spec(ROOT / SPECS[size], overrides=["classes=10"]).spec
    training = TrainingSpec(batch_size=batch, epochs=1, optimizer="sgd")
    rng = np.random.default_rng(0)
    count = batch * steps
    x = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, count)
    strategy = (tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(gpus)]) if gpus > 1
                else tf.distribute.OneDeviceStrategy("/gpu:0"))
    with precision_policy(precision), strategy.scope():
        model = build_model(spec)
        compile_model(model, training, steps)
    arguments = (x, y, 10, batch, 0, 0, 1, None)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: pipeline.replica_training_dataset(context, *arguments))
    timer = _StepTimes()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return batch / statistics.median(timer.times[WARMUP:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="per GPU")
    parser.add_argument("--json")
    args = parser.parse_args()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise SystemExit("no GPU: this script measures GPUs (bench/train_distributed.py measures CPUs)")
    card = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    precisions = ["float32", "mixed_float16"] + (["mixed_bfloat16"] if capability >= (8, 0) else [])
    results = []
    for size in (64, 224):
        for precision in precisions:
            counts = [1] + ([len(gpus)] if len(gpus) > 1 else [])
            for count in counts:
                speed = measure(size, precision, count, args.batch * count, args.steps)
                row = {"card": card, "gpus": count, "size": size, "precision": precision,
                       "global_batch": args.batch * count, "images_per_second": round(speed, 1)}
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
