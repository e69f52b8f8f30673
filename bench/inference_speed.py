"""Inference speed of the documented ResNet-50 (64x64x3, 6 classes) through every archbuilder
path and through hand-written PyTorch, batch 1 and batch 32, on this CPU.

    .venv/bin/python bench/inference_speed.py [--rounds 5] [--skip-compile]

Paths (each in its own worker process, started once and kept):
  keras          the Keras model as `predict` runs it (`model.predict_on_batch`), oneDNN on as in the CLI
  keras-fn       the same model called through one `tf.function` (what a server embedding Keras does)
  saved_model    `export --format saved_model`, loaded with `tf.saved_model.load`, serving signature
  litert         `export --format litert` (float32) in ai-edge-litert's interpreter (XNNPACK, 2 threads)
  onnx           `export --format onnx` in ONNX Runtime (CPU provider)
  torch-eager    bench/peers/torch_resnet50.py, channels_last, eval + inference_mode, torch 2.13 CPU
  torch-compile  the same module through `torch.compile` (inductor; compiled per batch size, untimed)
                 (both torch paths run with OMP_WAIT_POLICY=PASSIVE unless set: see _start)

The workers are measured in turns: each round asks every worker in order for a batch-1 series and
a batch-32 series while the others wait idle on a pipe, so slow drifts of a shared machine reach
all paths alike. Reported: median seconds per call over all rounds -> images/s, and batch-1
latency in ms; ratios are against the best PyTorch path measured in the same run. Each exported
path's output is compared with Keras's on the same input before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "architectures" / "resnet50.yaml"
SHAPE = (64, 64, 3)
PATHS = ("keras", "keras-fn", "saved_model", "litert", "onnx", "torch-eager", "torch-compile")
# Calls per series: batch 1 is ~10 ms, batch 32 ~0.3 s on this CPU; a series is ~1-2 s.
CALLS = {1: 40, 32: 6}


# --------------------------------------------------------------------------------------------
# worker side: load one path, then answer "B N" lines with N timings of batch B
# --------------------------------------------------------------------------------------------


def _worker(path: str, folder: Path) -> None:
    import numpy as np

    run = _load(path, folder)
    x = {b: np.random.default_rng(b).random((b, *SHAPE), dtype=np.float32) for b in CALLS}
    for b in CALLS:  # warm-up (and torch.compile's compilation for each batch size)
        for _ in range(3):
            run(x[b])
    probe = np.load(folder / "probe.npy")
    _reply({"ready": path, "probe": np.asarray(run(probe)).tolist()})
    for line in sys.stdin:
        batch, calls = map(int, line.split())
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            run(x[batch])
            times.append(time.perf_counter() - start)
        _reply({"times": times})


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _load(path: str, folder: Path):
    if path.startswith("torch"):
        import torch

        sys.path.insert(0, str(ROOT / "bench" / "peers"))
        from torch_resnet50 import resnet50_notebook

        module = resnet50_notebook(6).eval().to(memory_format=torch.channels_last)
        call = torch.compile(module) if path == "torch-compile" else module

        def run(x):
            with torch.inference_mode():
                # NHWC arrays viewed as NCHW tensors in channels_last memory: no copy, as Keras holds them.
                tensor = torch.from_numpy(x).permute(0, 3, 1, 2)
                return torch.softmax(call(tensor), dim=1).numpy()

        return run
    from archbuilder.runtime import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    if path in ("keras", "keras-fn"):
        from archbuilder.keras.model_files import open_model_file

        model = open_model_file(folder / "ResNet50.keras")
        if path == "keras":
            return lambda x: model.predict_on_batch(x)
        function = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return lambda x: function(tf.constant(x)).numpy()
    from archbuilder.export.runtimes import open_exported

    exported = open_exported(folder / {"saved_model": "saved_model", "litert": "m.tflite", "onnx": "m.onnx"}[path])
    return lambda x: exported.predict(x, batch_size=len(x))


# --------------------------------------------------------------------------------------------
# coordinator
# --------------------------------------------------------------------------------------------


def _prepare(folder: Path) -> None:
    """Build the documented ResNet-50 and write the .keras file and the three exports."""
    import numpy as np

    from archbuilder.export.formats import write_export
    from archbuilder.keras.graph import build_model
    from archbuilder.keras.model_files import save_model_file
    from archbuilder.plan.validate import load_checked_spec

    checked = load_checked_spec(SPEC)
    model = build_model(checked.spec, checked.plan)
    save_model_file(model, folder / "ResNet50.keras", {"spec_name": checked.spec.name})
    for fmt, name in (("saved_model", "saved_model"), ("litert", "m.tflite"), ("onnx", "m.onnx")):
        started = time.perf_counter()
        write_export(model, fmt, folder / name, {"spec_name": checked.spec.name})
        print(f"exported {fmt} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    np.save(folder / "probe.npy", np.random.default_rng(99).random((2, *SHAPE), dtype=np.float32))


def _start(path: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1"}
    if path.startswith("torch"):
        # PyTorch's OpenMP threads spin while waiting for each other; on a machine shared with
        # other work a preempted thread leaves its partner spinning, and batch 1 measured ~18x
        # slower (1.56 s vs 0.089 s per call). Passive waiting is PyTorch's best setting here.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return subprocess.Popen([sys.executable, __file__, "--worker", path, "--folder", str(folder)], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _read(process: subprocess.Popen, path: str) -> dict:
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"worker {path} exited (code {process.wait()})")
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true", help="leave torch.compile out (it compiles for minutes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.folder)
        return
    import numpy as np

    sys.path.insert(0, str(ROOT))
    paths = [p for p in PATHS if not (args.skip_compile and p == "torch-compile")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _prepare(folder)
        workers, probes = {}, {}
        for path in paths:  # one at a time: loading and compiling would otherwise overlap
            workers[path] = _start(path, folder)
            probes[path] = np.asarray(_read(workers[path], path)["probe"])
            print(f"{path} ready", file=sys.stderr, flush=True)
        times = {(p, b): [] for p in paths for b in CALLS}
        for round_ in range(args.rounds):
            for batch in CALLS:
                for path in paths:
                    workers[path].stdin.write(f"{batch} {CALLS[batch]}\n")
                    workers[path].stdin.flush()
                    times[path, batch] += _read(workers[path], path)["times"]
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        for process in workers.values():
            process.stdin.close()
            process.wait()
    _report(paths, times, probes)


def _report(paths, times, probes) -> None:
    import numpy as np

    median = {key: statistics.median(values) for key, values in times.items()}
    torch_best = {b: min(median[p, b] for p in paths if p.startswith("torch")) for b in CALLS}
    print("| path | batch 1 latency (ms) | batch 1 images/s | batch 32 images/s | vs best PyTorch, batch 32 | max |p - p_keras| |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        difference = "—" if path.startswith("torch") else f"{np.max(np.abs(probes[path] - probes['keras'])):.1e}"
        print(f"| {path} | {1000 * median[path, 1]:.1f} | {1 / median[path, 1]:.0f} | {32 / median[path, 32]:.0f} | "
              f"{torch_best[32] / median[path, 32]:.2f}x | {difference} |")
    print(json.dumps({f"{p}@{b}": median[p, b] for p, b in median}))


if __name__ == "__main__":
    main()
