"""ResNet-50 training speed on GPUs: 64x64 and 224x224, float32 and mixed precision, and mirrored
scaling over every GPU of the machine. NOT RUN ON A GPU YET (bench/RESULTS.md says why).

    .venv/bin/python bench/gpu_resnet50.py [--steps 30] [--batch 64] [--json OUT.json]
    .venv/bin/python bench/gpu_resnet50.py --smoke     # every code path, tiny: checks the script runs (CPU if no GPU)

Builds `architectures/resnet50.yaml` (64x64x3) and `architectures/imagenet/resnet50.yaml`
(224x224x3) with archbuilder's builder, compiles them as `train` does (training/optimizers.py), and
fits synthetic uint8 images through archbuilder's own input pipeline (nothing is downloaded).
Images/s = global batch / median step seconds, steps after the first 5 (tracing, autotuning).
Configurations, per size: float32 and mixed_float16 (and mixed_bfloat16 where the GPU has bf16)
on one GPU; then, with several GPUs, the same over all of them with MirroredStrategy at
batch x GPUs (the per-GPU batch is kept), so the ratio to one GPU is the scaling. Prints the
card's name first and with every line, then a summary: images/s per configuration, mixed
precision's speed-up over float32, and the scaling over the GPUs.

`--smoke` runs the same code at batch 2 per device, 3 steps (1 of warm-up), 64x64 input, on the
GPUs, or without one on the CPU split into 2 logical devices (so the mirrored path runs too): it
checks that the script works end to end (on this project's 2-core CPU: ~8 minutes, the ResNet-50
graphs traced 8 times); its figures mean nothing.
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
from archbuilder.plan.validate import load_checked_spec  # noqa: E402
from archbuilder.training.optimizers import compile_model  # noqa: E402
from archbuilder.training.precision import precision_policy  # noqa: E402

SPECS = {64: "architectures/resnet50.yaml", 224: "architectures/imagenet/resnet50.yaml"}
SMOKE_SIZE = 64  # the documented ResNet-50 needs 37x37 or more (its 2x2 average pool); the ImageNet one builds at 64


class _StepTimes(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.start)

    def on_train_begin(self, logs=None):
        self.times = []


def measure(size: int, precision: str, devices: list[str], batch: int, steps: int, warmup: int,
            input_size: int) -> float:
    overrides = ["classes=10"] + ([f"input.shape=[{input_size},{input_size},3]"] if input_size != size else [])
    spec = load_checked_spec(ROOT / SPECS[size], overrides=overrides).spec
    training = TrainingSpec(batch_size=batch, epochs=1, optimizer="sgd")
    rng = np.random.default_rng(0)
    count = batch * steps
    x = rng.integers(0, 256, (count, input_size, input_size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, count)
    strategy = (tf.distribute.MirroredStrategy(devices) if len(devices) > 1
                else tf.distribute.OneDeviceStrategy(devices[0]))
    with precision_policy(precision), strategy.scope():
        model = build_model(spec)
        compile_model(model, training, steps)
    arguments = (x, y, 10, batch, 0, 0, 1, None)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: pipeline.replica_training_dataset(context, *arguments))
    timer = _StepTimes()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    if len(timer.times) != steps:
        raise SystemExit(f"{steps} steps asked, {len(timer.times)} ran")
    return batch / statistics.median(timer.times[warmup:])


def _devices(smoke: bool) -> tuple[list[str], str, tuple[int, int]]:
    """The devices to use, the card's name and its compute capability."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return ([f"/gpu:{i}" for i in range(len(gpus))], details.get("device_name", "GPU"),
                tuple(details.get("compute_capability", (0, 0))))
    if not smoke:
        raise SystemExit("no GPU: this script measures GPUs (bench/train_distributed.py measures CPUs); "
                         "--smoke runs it on the CPU to check it works")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return ["/cpu:0", "/cpu:1"], f"CPU ({_cpu_model()}), smoke run: figures mean nothing", (0, 0)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def summary(results: list[dict]) -> list[str]:
    """One line per size and precision: images/s on one device, vs float32, and the scaling."""
    lines = []
    one = {(r["size"], r["precision"]): r["images_per_second"] for r in results if r["gpus"] == 1}
    for r in results:
        if r["gpus"] != 1:
            continue
        line = f"{r['size']}x{r['size']} {r['precision']:>15}: {r['images_per_second']:9.1f} images/s on 1"
        base = one.get((r["size"], "float32"))
        if r["precision"] != "float32" and base:
            line += f" (x{r['images_per_second'] / base:.2f} vs float32)"
        for other in results:
            if other["gpus"] > 1 and (other["size"], other["precision"]) == (r["size"], r["precision"]):
                line += (f"; {other['images_per_second']:.1f} on {other['gpus']}: scaling "
                         f"x{other['images_per_second'] / r['images_per_second']:.2f} (ideal x{other['gpus']})")
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="per GPU")
    parser.add_argument("--json", help="written after every configuration, so a run cut short keeps its figures")
    parser.add_argument("--smoke", action="store_true", help="3 steps at batch 2, 64x64: checks that it runs (without a GPU: the CPU as 2 devices)")
    args = parser.parse_args()
    devices, card, capability = _devices(args.smoke)
    smoke = args.smoke
    if smoke:
        card += "" if devices[0].startswith("/cpu") else ", smoke run: figures mean nothing"
    steps, batch, warmup = (3, 2, 1) if smoke else (args.steps, args.batch, 5)
    if steps <= warmup:
        raise SystemExit(f"--steps must be more than the {warmup} warm-up steps")
    print(f"card: {card}; {len(devices)} device(s); compute capability {capability[0]}.{capability[1]}; "
          f"TensorFlow {tf.__version__}", flush=True)
    precisions = ["float32", "mixed_float16"] + (["mixed_bfloat16"] if capability >= (8, 0) else [])
    results = []
    for size in (64, 224):
        for precision in precisions:
            for count in [1] + ([len(devices)] if len(devices) > 1 else []):
                speed = measure(size, precision, devices[:count], batch * count, steps, warmup,
                                SMOKE_SIZE if smoke else size)
                row = {"card": card, "gpus": count, "size": size, "precision": precision,
                       "global_batch": batch * count, "images_per_second": round(speed, 1)}
                if smoke:
                    row["input"] = SMOKE_SIZE
                results.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"summary ({card}):")
    for line in summary(results):
        print("  " + line, flush=True)


if __name__ == "__main__":
    main()
