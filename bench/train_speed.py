"""Training speed of the documented ResNet-50 (64x64x3, batch 32) on this CPU, side by side.

    .venv/bin/python bench/train_speed.py [--per-class 80] [--repeats 1]

Each configuration runs in its own process (TF_ENABLE_ONEDNN_OPTS is read once, at TensorFlow's
import), one after the other, on the same 10 x PER_CLASS real photos of the sign-language digits:

  cli            `python cli.py train architectures/resnet50.yaml --data FOLDER --epochs 1`:
                 our whole path, JPEG files -> decode/resize -> cached uint8 -> tf.data -> fit
  cli-tf-kernels the same with `--set training.fast_cpu_kernels=false`: TensorFlow's own kernel
                 gradients for every convolution (training/cpu_kernels.py)
  cli-bf16       the same with `--set training.precision=mixed_bfloat16` (issue 12's bf16 floor on
                 CPUs with AVX512_BF16; emulated and ~20x slower on CPUs without it, e.g. Zen 3)
  builder-memory our builder's model, same compile and kernels as `cli`, `model.fit` on float
                 arrays already in memory
  builder-pipeline the same model and fit, fed by `cli.py train`'s tf.data pipeline (cached uint8
                 images, gather, x/255, prefetch) instead of arrays: the input path alone
  notebook       the notebook's hand-written Keras code (tests/helpers/notebook_resnet.py), in memory,
                 oneDNN on as in `cli.py` (the same settings)
  pipeline       (no model) the input pipeline alone: decode per image, CPU per batch fed to fit
  keras-default  the same notebook code with TensorFlow's defaults (TF_ENABLE_ONEDNN_OPTS unset,
                 which on Zen 3 means oneDNN off; on Zen 4 TensorFlow turns it on by itself)
  torch-eager-fp32    the hand-written PyTorch network (bench/peers/torch_resnet50.py), CPU build,
                 channels_last memory, float32, eager; Adam 1e-3, cross-entropy, batch 32
  torch-compile-fp32  the same under `torch.compile` (compilation happens in the first steps)
  torch-eager-bf16    the same, eager, with bf16 autocast (emulated on CPUs without AVX512_BF16)
  torch-compile-bf16  the same, compiled, with bf16 autocast
  torch-...-passive   any torch configuration with OMP_WAIT_POLICY=PASSIVE (threads sleep instead of
                 spinning while they wait: what a shared machine needs)
  matmul         (no model) numpy's float32 2048x2048 matmul, GFLOP/s: the CPU's float32 ceiling,
                 measured in the same run; one training image costs 3 x 0.616 GFLOP (REFERENCE.md §3)

The torch configurations need `pip install -e .[bench]`. They run with glibc's malloc keeping
the memory it frees (--torch-malloc keep, the default; `default`: as installed): on a VM that
hands free memory to its host at once, PyTorch as installed pays a host page fault for every page
of every large tensor of every step (bench/peers/malloc.py). PyTorch peers decode the same photos with
Pillow (bilinear resize to 64x64, x/255) and time steps after TORCH_WARMUP steps (torch.compile
compiles during the first ones; bf16 kernels settle after a few), so their figure is the steady
state, as for the other configurations (which drop only the first step).

Images/s = 32 / median seconds per training step, over all steps of one epoch except the first
(which traces the graph). Images per CPU-second uses the process's CPU time per step instead (all
threads, tf.data included): on a machine shared with other work it moves much less than wall time.
Peak memory is each process's ru_maxrss.
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
sys.path.insert(0, str(ROOT))

from bench.peers import malloc  # noqa: E402

IMAGES = ROOT / ".." / "shared" / "datasets" / "sign-language-digits" / "images"
SPEC = ROOT / "architectures" / "resnet50.yaml"
BATCH = 32


def make_folder(root: Path, per_class: int) -> Path:
    for name in sorted(p.name for p in IMAGES.iterdir()):
        (root / name).mkdir(parents=True)
        for source in sorted((IMAGES / name).iterdir())[:per_class]:
            (root / name / source.name).symlink_to(source.resolve())
    return root


def run_process(command: list[str], env: dict) -> tuple[str, float]:
    """(stdout, peak RSS in MiB) of one child process."""
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed ({process.returncode}):\n{text[-2000:]}")
    return text, usage.ru_maxrss / 1024


def measure(config: str, folder: Path, work: Path, torch_malloc: str = malloc.DEFAULT) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if config.startswith("torch-"):
        env = malloc.peer_environment(torch_malloc, env)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if config.startswith("cli"):
        run = work / f"run-{time.monotonic_ns()}"
        command = [sys.executable, "cli.py", "train", str(SPEC), "--data", str(folder), "--epochs", "1",
                   "--batch-size", str(BATCH), "--out", str(run), "--quiet"]
        if config == "cli-tf-kernels":
            command += ["--set", "training.fast_cpu_kernels=false"]
        if config == "cli-bf16":
            command += ["--set", "training.precision=mixed_bfloat16"]
        _, peak = run_process(command, env)
        row = json.loads((run / "state.json").read_text())["history"][0]
        result = {k: row[k] for k in ("images_per_second", "images_per_cpu_second")}
    else:
        if config == "notebook":
            env["TF_ENABLE_ONEDNN_OPTS"] = "1"
        if config.endswith("-passive"):
            # GNU OpenMP's threads spin while they wait; on a machine whose cores are shared with
            # other processes that spinning takes the cores from the thread being waited for.
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        text, peak = run_process([sys.executable, __file__, "--worker", config, "--folder", str(folder)], env)
        result = json.loads(text.strip().splitlines()[-1])
    return {"config": config, **result, "peak_rss_mib": round(peak)}


def pipeline_worker(folder: Path) -> None:
    """The input pipeline alone: decode cost per image, and CPU per batch of the tf.data path that
    `cli.py train` feeds to fit (gather, x/255, prefetch), without a model. Prints a JSON line."""
    sys.path.insert(0, str(ROOT))
    from archbuilder.runtime import configure_tensorflow_environment

    configure_tensorflow_environment()
    from archbuilder.data.folder import scan_image_folder
    from archbuilder.data.images import load_image_files
    from archbuilder.data.pipeline import training_dataset

    files = scan_image_folder(folder)
    load_image_files(files.paths[:1], (64, 64, 3))  # builds the tf.data graph once
    wall, cpu = time.perf_counter(), time.process_time()
    x = load_image_files(files.paths, (64, 64, 3))
    decode = {"decode_ms_per_image": round(1000 * (time.perf_counter() - wall) / len(x), 3),
              "decode_cpu_ms_per_image": round(1000 * (time.process_time() - cpu) / len(x), 3)}
    batches = iter(training_dataset(x, files.labels, len(files.class_names), BATCH, 0, 0, 20))
    next(batches)
    wall, cpu, count = time.perf_counter(), time.process_time(), 0
    for _ in batches:
        count += 1
    print(json.dumps({**decode, "batch_ms": round(1000 * (time.perf_counter() - wall) / count, 3),
                      "batch_cpu_ms": round(1000 * (time.process_time() - cpu) / count, 3)}))


TORCH_WARMUP = 4
GFLOP_PER_IMAGE = 3 * 0.616  # forward MACs 308,178,944 x 2 FLOP = 0.616 GFLOP; backward ~2x forward


def matmul_worker() -> None:
    """numpy float32 2048x2048 matmul: median GFLOP/s over 15 calls, after 3 warm-up calls."""
    import numpy as np

    n = 2048
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype="float32"), rng.random((n, n), dtype="float32")
    times, cpu_times = [], []
    for index in range(18):
        start, cpu = time.perf_counter(), time.process_time()
        a @ b
        if index >= 3:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
    gflops = 2 * n**3 / statistics.median(times) / 1e9
    # Per CPU-second too: on a shared machine the wall-clock ceiling depends on what else runs,
    # while FLOP per CPU-second compares with the models' images per CPU-second.
    gflops_cpu = 2 * n**3 / statistics.median(cpu_times) / 1e9
    print(json.dumps({"gflops": round(gflops, 1), "ceiling_images_per_second": round(gflops / GFLOP_PER_IMAGE, 1),
                      "gflops_per_cpu_second": round(gflops_cpu, 1),
                      "ceiling_images_per_cpu_second": round(gflops_cpu / GFLOP_PER_IMAGE, 1)}))


def torch_worker(config: str, folder: Path) -> None:
    """The hand-written PyTorch peer, trained for one epoch on the photos; prints a JSON line."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from bench.peers.torch_resnet50 import resnet50_notebook

    classes = sorted(p.name for p in folder.iterdir())
    paths = [(path, label) for label, name in enumerate(classes) for path in sorted((folder / name).iterdir())]
    x = np.stack([np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.BILINEAR)) for path, _ in paths])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([label for _, label in paths])
    torch.manual_seed(0)
    model = resnet50_notebook(len(classes)).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = torch.nn.CrossEntropyLoss()
    bf16 = "bf16" in config

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_function(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    if "compile" in config:
        step = torch.compile(step)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    times, cpu_times = [], []
    for start in range(0, len(y) - BATCH + 1, BATCH):  # full batches only: no recompile for a last one
        batch = order[start:start + BATCH]
        wall, cpu = time.perf_counter(), time.process_time()
        float(step(x[batch], y[batch]))
        times.append(time.perf_counter() - wall)
        cpu_times.append(time.process_time() - cpu)
    print(json.dumps({
        "images_per_second": round(BATCH / statistics.median(times[TORCH_WARMUP:]), 2),
        "images_per_cpu_second": round(BATCH / statistics.median(cpu_times[TORCH_WARMUP:]), 2),
        "first_steps_seconds": round(sum(times[:TORCH_WARMUP]), 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }))


def worker(config: str, folder: Path) -> None:
    """One in-memory configuration; prints a JSON line."""
    if config == "pipeline":
        pipeline_worker(folder)
        return
    if config == "matmul":
        matmul_worker()
        return
    if config.startswith("torch"):
        torch_worker(config, folder)
        return
    sys.path.insert(0, str(ROOT))
    if config.startswith("builder"):
        from archbuilder.runtime import configure_tensorflow_environment

        configure_tensorflow_environment()
    import keras

    from archbuilder.data.folder import scan_image_folder
    from archbuilder.data.images import load_image_files

    files = scan_image_folder(folder)
    start = time.perf_counter()
    x = load_image_files(files.paths, (64, 64, 3))
    decode_seconds = time.perf_counter() - start
    feed = {"x": x.astype("float32") / 255.0,  # the notebook: X_train = X_train_orig / 255.
            "y": keras.utils.to_categorical(files.labels, len(files.class_names)), "batch_size": BATCH}
    if config == "builder-pipeline":
        from archbuilder.data.pipeline import steps_per_epoch, training_dataset

        feed = {"x": training_dataset(x, files.labels, len(files.class_names), BATCH, 0, 0, 1),
                "steps_per_epoch": steps_per_epoch(len(x), BATCH), "shuffle": False}
    if config.startswith("builder"):
        from archbuilder.keras.graph import build_model
        from archbuilder.spec.training import TrainingSpec
        from archbuilder.training.kernel_choice import switch_kernels_where_faster
        from archbuilder.training.optimizers import compile_model
        from archbuilder.plan.validate import load_checked_spec

        model = build_model(load_checked_spec(SPEC, [f"classes={len(files.class_names)}"]).spec)
        compile_model(model, TrainingSpec(), len(files.labels) // BATCH)
        switch_kernels_where_faster(model, BATCH, lambda message: print(message, file=sys.stderr))  # as `train`
    else:
        from tests.helpers.notebook_resnet import notebook_resnet50

        model = notebook_resnet50(keras, input_shape=(64, 64, 3), classes=len(files.class_names))
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

    class Steps(keras.callbacks.Callback):
        times: list[float] = []

        cpu_times: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # as the run recorder does
            self.times.append(time.perf_counter() - self.start)
            self.cpu_times.append(time.process_time() - self.cpu_start)

    steps = Steps()
    model.fit(**feed, epochs=1, callbacks=[steps], verbose=0)
    print(json.dumps({
        "images_per_second": round(BATCH / statistics.median(steps.times[1:]), 2),
        "images_per_cpu_second": round(BATCH / statistics.median(steps.cpu_times[1:]), 2),
        "decode_seconds": round(decode_seconds, 2),
    }))


# name: (numerator, denominator) configurations; "pipeline" ratios are speeds, so 1 - ratio is
# the share of step time the JPEG path adds.
RATIOS = {
    "cli_vs_keras_default": ("cli", "keras-default"),
    "cli_vs_notebook": ("cli", "notebook"),
    "cli_vs_cli_tf_kernels": ("cli", "cli-tf-kernels"),
    "cli_vs_builder_memory": ("cli", "builder-memory"),
    "builder_pipeline_vs_builder_memory": ("builder-pipeline", "builder-memory"),
    "cli_vs_torch_eager_fp32": ("cli", "torch-eager-fp32"),
    "cli_vs_torch_compile_fp32": ("cli", "torch-compile-fp32"),
    "cli_vs_torch_eager_bf16": ("cli", "torch-eager-bf16"),
    "cli_vs_torch_compile_bf16": ("cli", "torch-compile-bf16"),
    "cli_vs_torch_eager_fp32_passive": ("cli", "torch-eager-fp32-passive"),
    "cli_bf16_vs_cli": ("cli-bf16", "cli"),
    "cli_bf16_vs_torch_eager_bf16": ("cli-bf16", "torch-eager-bf16"),
    "cli_bf16_vs_torch_compile_bf16": ("cli-bf16", "torch-compile-bf16"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=80, help="Photos per digit (10 digits; 80 -> 25 steps).")
    parser.add_argument("--repeats", type=int, default=1, help="Rounds over all configurations (interleaved).")
    parser.add_argument("--configs", default="cli,cli-tf-kernels,builder-memory,builder-pipeline,notebook,keras-default")
    parser.add_argument("--torch-malloc", choices=sorted(malloc.SETTINGS), default=malloc.DEFAULT,
                        help="the torch configurations' glibc malloc: keep the memory it frees (default) "
                             "or as installed (bench/peers/malloc.py)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.folder)
        return
    configs = args.configs.split(",")
    results: dict[str, list[dict]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "images", args.per_class)
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        text, _ = run_process([sys.executable, __file__, "--worker", "pipeline", "--folder", str(folder)], env)
        pipeline = json.loads(text.strip().splitlines()[-1])
        print(json.dumps({"pipeline": pipeline, "torch_malloc": malloc.described(args.torch_malloc)}), flush=True)
        for round_ in range(args.repeats):
            # Each round starts one configuration later, so no configuration always runs first.
            for config in configs[round_ % len(configs):] + configs[:round_ % len(configs)]:
                result = measure(config, folder, Path(tmp), args.torch_malloc)
                results[config].append(result)
                print(json.dumps({"round": round_ + 1, **result}), flush=True)
    matmul = results.pop("matmul", [])
    summary = {"images": 10 * args.per_class, "batch": BATCH, "pipeline": pipeline,
               "peak_rss_mib": {c: max(r["peak_rss_mib"] for r in rs) for c, rs in results.items()}}
    for measure_ in ("images_per_second", "images_per_cpu_second"):
        speed = {c: statistics.median(r[measure_] for r in rs) for c, rs in results.items()}
        ratios = {"median": speed}
        for name, (faster, slower) in RATIOS.items():
            if faster in results and slower in results:
                # Both the ratio of the medians and the median of each round's own ratio: the
                # configurations of one round ran minutes apart, so the second resists slow drifts
                # of the machine's speed.
                per_round = [a[measure_] / b[measure_] for a, b in zip(results[faster], results[slower])]
                ratios[name] = {"of_medians": round(speed[faster] / speed[slower], 3),
                                "median_per_round": round(statistics.median(per_round), 3)}
        summary[measure_] = ratios
    if matmul and "cli" in results:
        # The float32 ceiling of this CPU in images/s, measured in each round beside the others.
        ceiling = statistics.median(r["ceiling_images_per_second"] for r in matmul)
        per_round = [c["images_per_second"] / m["ceiling_images_per_second"] for c, m in zip(results["cli"], matmul)]
        summary["float32_ceiling"] = {
            "matmul_gflops": statistics.median(r["gflops"] for r in matmul), "images_per_second": ceiling,
            "cli_share": {"of_medians": round(summary["images_per_second"]["median"]["cli"] / ceiling, 3),
                          "median_per_round": round(statistics.median(per_round), 3)}}
        if all("ceiling_images_per_cpu_second" in r for r in matmul):
            cpu_ceiling = statistics.median(r["ceiling_images_per_cpu_second"] for r in matmul)
            summary["float32_ceiling"]["images_per_cpu_second"] = cpu_ceiling
            summary["float32_ceiling"]["cli_cpu_share"] = round(
                summary["images_per_cpu_second"]["median"]["cli"] / cpu_ceiling, 3)
    if "cli" in results:
        cpu_step_ms = 1000 * BATCH / statistics.median(r["images_per_cpu_second"] for r in results["cli"])
        # What the pipeline adds to each training step's CPU time, and the one-time decode
        # relative to one epoch of training over the same images.
        summary["pipeline_cpu_share_of_step"] = round(pipeline["batch_cpu_ms"] / cpu_step_ms, 5)
        summary["decode_cpu_share_of_first_epoch"] = round(
            pipeline["decode_cpu_ms_per_image"] * BATCH / cpu_step_ms, 4)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
