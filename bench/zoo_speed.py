"""Training speed of every zoo network (architectures/imagenet/): `cli.py train` against timm, side by side.

    .venv/bin/python bench/zoo_speed.py [--networks convnext_tiny,resnext50_32x4d] [--batch 32]
        [--steps 6] [--size 224] [--rounds 2] [--warmup 2] [--timm-malloc keep|default]

For each network (default: every file in architectures/imagenet/, each beside the timm model
bench/peers/timm_zoo.py names), alternating ours and timm's in separate processes, round after
round (each round starts with the other one), on the same real photos (the sign-language digits,
10 classes, batch x steps images, so each process runs `--steps` training steps of `--batch`):

  ours   `python cli.py train architectures/imagenet/X.yaml --data FOLDER --epochs 1 --batch-size B`
         (+ `--set input.shape=[S, S, 3]` with --size): images/s is the run's own figure
         (state.json: batch / median step time over every step but the first, which traces);
         `first_step_s`: process start to the end of the first step (train's "graph ready" line,
         time-stamped as it arrives); `first_step_extra_s`: the first step's duration less the
         median step, where the first step starts at train's "training X on N images" line (the
         model is built and the data read; what follows is the kernel choice, building the
         optimizer's variables, tracing and the first call); `first_step_cpu_s`: the process's
         CPU seconds (all threads) over that first step, `first_step_system_s` and
         `first_step_faults_m` the kernel's share of them and the minor page faults (millions):
         the first step takes the step's memory from the system, and on a VM whose host reclaims
         freed memory each new page costs a host fault too; `later_step_cpu_s`: CPU seconds per later
         step (an estimate: graph ready to the first line after the last step, the epoch's end
         included, over the steps between); `end_s`: end of the last step (fit start + the
         epoch's seconds) to process exit; `after_training`: train's own line
         Each run gets a new, empty ARCHBUILDER_CACHE_DIR (the kernel timings of kernel_choice.py
         and grouped_choice.py live there): every run is a machine's first, unless --warm-cache
         (the user's cache folder, as later runs on a machine see it)
  timm   `timm.create_model(name, num_classes=10)`, channels_last, float32, Adam 1e-3,
         cross-entropy, one training step per batch of the same photos (Pillow bilinear resize,
         x/255): batch / median step time over the steps after --warmup; `first_step_s`: process
         start to the end of its first step (imports and model creation included);
         `first_step_extra_s`: its first step less its median step; `first_step_cpu_s`,
         `later_step_cpu_s`: CPU seconds of its first step and its median step; the first step's
         `first_step_system_s` and `first_step_faults_m` as ours'; `end_s`: end of
         its last step to process exit

timm's allocator (--timm-malloc): `keep` (the default) runs timm with glibc's malloc keeping the
memory it frees; on a VM that hands free memory to its host at once, timm as installed (`default`)
pays a host page fault for every page of every large tensor of every step (bench/peers/malloc.py).

`ratio` is ours / timm's images/s, the median of each round's own ratio. `GFLOP/s`: images/s
times 6x the file's forward multiply-adds (`training_gflop`), the arithmetic rate each side
reached. A run that fails (e.g. `train`'s memory guard refusing the batch: ResNet-152 at 32 on a
24 GB machine) is printed as `failed`; that network's later runs are skipped and the next network
runs. The first line holds the CPU model, its flags of interest and `uptime`'s load: figures
measured while other programs run are noisy; say so with them. torch and timm come from the `bench` extra (`pip install -e .[bench]`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import malloc  # noqa: E402
from bench.peers.timm_zoo import TIMM_NAMES  # noqa: E402

ZOO = ROOT / "architectures" / "imagenet"
IMAGES = ROOT / ".." / "shared" / "datasets" / "sign-language-digits" / "images"
CLASSES = 10


def make_folder(root: Path, count: int) -> Path:
    """10 class folders of symlinks to `count` photos in all (the first of each digit, as even as
    possible): a multiple of the batch, so that every step has a full batch (no retrace)."""
    for index, name in enumerate(sorted(p.name for p in IMAGES.iterdir())[:CLASSES]):
        (root / name).mkdir(parents=True)
        for source in sorted((IMAGES / name).iterdir())[:count // CLASSES + (index < count % CLASSES)]:
            (root / name / source.name).symlink_to(source.resolve())
    return root


class Usage(NamedTuple):
    cpu_s: float  # user + system, all threads
    system_s: float  # of it in the kernel: on a VM whose host reclaims freed memory, mostly page faults
    minor_faults: int  # pages the process touched for the first time (or again after they were freed)


def _usage(pid: int) -> Usage | None:
    """What process `pid` has used so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")  # fields 10, 14, 15 of proc(5): minflt, utime, stime
    return Usage((int(fields[11]) + int(fields[12])) / tick, int(fields[12]) / tick, int(fields[7]))


def _self_usage() -> Usage:
    """This process's Usage (the timm worker's own, step by step)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(usage.ru_utime + usage.ru_stime, usage.ru_stime, usage.ru_minflt)


def run_timed(command: list[str], env: dict,
              cpu: list | None = None) -> tuple[float, list[tuple[float, str]], float, float, int]:
    """Run `command`; (start, [(time, line)] of stdout+stderr as the lines arrive, exit time,
    peak RSS in MiB, exit code). Times are time.time() (the same clock as the children's). With
    `cpu`, the process's Usage as each line arrives is appended to it (on a loaded machine wall
    seconds follow the load, CPU seconds far less)."""
    lines: list[tuple[float, str]] = []
    start = time.time()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)

    def read():
        for line in process.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            if cpu is not None:
                cpu.append(_usage(process.pid))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.time()
    reader.join()
    return start, lines, ended, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def _failed(command, code, lines) -> RuntimeError:
    tail = "\n".join(text for _, text in lines[-30:])
    return RuntimeError(f"{' '.join(map(str, command))} failed ({code}):\n{tail}")


def ours(network: str, folder: Path, work: Path, args, prelude: str = "") -> dict:
    """One `cli.py train` process of `network`; with `prelude`, Python run in it first (an A/B's
    other arm: bench/first_step_passes.py)."""
    run = work / f"run-{network}-{time.monotonic_ns()}"
    argv = ["cli.py", "train", str(ZOO / f"{network}.yaml"), "--data", str(folder), "--epochs", "1",
            "--batch-size", str(args.batch), "--out", str(run)]
    if args.size:
        argv += ["--set", f"input.shape=[{args.size}, {args.size}, 3]"]
    command = [sys.executable, *argv]
    if prelude:
        command = [sys.executable, "-c", f"{prelude}\nimport runpy, sys\nsys.argv = {argv!r}\n"
                   "runpy.run_path('cli.py', run_name='__main__')"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not args.warm_cache:  # a machine's first run: every kernel choice is timed in this run
        env["ARCHBUILDER_CACHE_DIR"] = str(run.with_name(run.name + "-cache"))
    cpu: list = []
    start, lines, ended, peak, code = run_timed(command, env, cpu)
    if code != 0:
        raise _failed(command, code, lines)
    row = json.loads((run / "state.json").read_text())["history"][0]

    def when(prefix: str) -> float:
        return next(t for t, text in lines if text.startswith(prefix))

    last_step = when("preparing the graph") + row["seconds"]
    after = next((text for _, text in lines if text.startswith("after training: ")), None)
    # train's "training <spec name> on N images, ..." line: the model is built, the data read
    begin = next(i for i, (_, text) in enumerate(lines)
                 if text.startswith("training ") and " images" in text.split(";")[0])
    ready = next(i for i, (_, text) in enumerate(lines) if text.startswith("graph ready"))
    first_step = lines[ready][0] - lines[begin][0]
    # CPU seconds: of the first step (from `begin`), and per later step (graph ready to the first
    # line after the last step, over the steps between: an estimate, the epoch's end included)
    following = next((i for i, (t, _) in enumerate(lines) if t >= last_step and i > ready), None)
    known = None not in cpu
    cpu_step = (cpu[following].cpu_s - cpu[ready].cpu_s) / (args.steps - 1) if following is not None and known else None
    return {"images_per_second": row["images_per_second"], "first_step_s": round(when("graph ready") - start, 1),
            "first_step_extra_s": round(first_step - args.batch / row["images_per_second"], 1),
            "first_step_cpu_s": round(cpu[ready].cpu_s - cpu[begin].cpu_s, 1) if known else None,
            **(_first_step_memory(cpu[begin], cpu[ready]) if known else {}),
            "later_step_cpu_s": None if cpu_step is None else round(cpu_step, 2),
            "end_s": round(ended - last_step, 1), "after_training": after, "peak_rss_mib": round(peak),
            "switches": [text for _, text in lines
                         if any(what in text for what in ("grouped convolutions", "kernel gradients", "Winograd F(2x2",
                                                          "matrix products for", "depthwise kernel gradient for",
                                                          "zero padding folded"))],
            "kernel_timing": [text for _, text in lines if text.startswith("timed ")]}


def _first_step_memory(before: Usage, after: Usage) -> dict:
    """The first step's system CPU seconds and minor page faults (millions): what fresh memory cost it."""
    return {"first_step_system_s": round(after.system_s - before.system_s, 1),
            "first_step_faults_m": round((after.minor_faults - before.minor_faults) / 1e6, 2)}


def theirs(network: str, folder: Path, args) -> dict:
    command = [sys.executable, __file__, "--timm-worker", TIMM_NAMES[network][0], "--folder", str(folder),
               "--batch", str(args.batch), "--size", str(args.size or zoo_input_size(network)), "--warmup", str(args.warmup)]
    start, lines, ended, peak, code = run_timed(command, malloc.peer_environment(args.timm_malloc))
    if code != 0:
        raise _failed(command, code, lines)
    result = json.loads(lines[-1][1])
    return {"images_per_second": result["images_per_second"], "first_step_s": round(result["first_step_end"] - start, 1),
            "first_step_extra_s": result["first_step_extra_s"], "first_step_cpu_s": result["first_step_cpu_s"],
            "first_step_system_s": result["first_step_system_s"], "first_step_faults_m": result["first_step_faults_m"],
            "later_step_cpu_s": result["later_step_cpu_s"],
            "end_s": round(ended - result["last_step_end"], 1), "peak_rss_mib": round(peak),
            "timm": result["timm"], "torch": result["torch"], "threads": result["threads"]}


def zoo_input_size(network: str) -> int:
    """The zoo file's own input height (a square input; 224, or 240 for EfficientNet-B1)."""
    from archbuilder.plan.validate import load_checked_spec

    return int(load_checked_spec(ZOO / f"{network}.yaml").spec.input.shape[0])


def training_gflop(network: str, size: int | None) -> float:
    """GFLOP of one image's training step, estimated as 6x the forward multiply-adds of the file
    at CLASSES classes (and `size`): forward 2 FLOP a multiply-add, the two gradients as much again
    each. Images/s times this is the arithmetic rate a run reached, to set against the CPU's (a
    2048x2048 float32 product: bench/cpu-avx512bf16-2026-12-06r/mm.py); timm's network is the
    same one (bench/peers/timm_zoo.py notes where it differs), so the same figure serves both."""
    from archbuilder.plan.validate import load_checked_spec

    overrides = [f"classes={CLASSES}"] + ([f"input.shape=[{size}, {size}, 3]"] if size else [])
    return 6 * load_checked_spec(ZOO / f"{network}.yaml", overrides).plan.macs / 1e9


def timm_worker(name: str, folder: Path, batch: int, size: int, warmup: int) -> None:
    """Train timm's `name` one step per batch of the photos in `folder`; prints a JSON line."""
    import numpy as np
    import torch
    from PIL import Image

    from bench.peers.timm_zoo import create_timm_model, timm_version

    classes = sorted(p.name for p in folder.iterdir())
    paths = [(path, label) for label, c in enumerate(classes) for path in sorted((folder / c).iterdir())]
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p, _ in paths])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([label for _, label in paths])
    torch.manual_seed(0)
    model = create_timm_model(name, len(classes)).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    times, cpu_times, ends = [], [], []
    first_step_memory = None
    for first in range(0, len(y) - batch + 1, batch):  # full batches only
        index = order[first:first + batch]
        start, start_cpu, start_usage = time.perf_counter(), time.process_time(), _self_usage()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
        float(loss)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
        first_step_memory = first_step_memory or _first_step_memory(start_usage, _self_usage())
        ends.append(time.time())
    median = statistics.median(times[warmup:] or times)
    median_cpu = statistics.median(cpu_times[warmup:] or cpu_times)
    print(json.dumps({"images_per_second": round(batch / median, 2), "first_step_extra_s": round(times[0] - median, 1),
                      "first_step_cpu_s": round(cpu_times[0], 1), **first_step_memory, "later_step_cpu_s": round(median_cpu, 2),
                      "first_step_end": ends[0], "last_step_end": ends[-1], "steps": len(times),
                      "timm": timm_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}),
          flush=True)


def machine() -> dict:
    text = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {"cpu": model, "cpus": len(os.sched_getaffinity(0)), "load": os.getloadavg(),
            "flags": [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=",".join(sorted(p.stem for p in ZOO.glob("*.yaml"))),
                        help="zoo file stems, comma-separated (default: every file in architectures/imagenet/)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="training steps per process (batch x steps photos)")
    parser.add_argument("--size", type=int, default=0, help="input height and width (default: each file's own)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (ours, timm) per network, alternating")
    parser.add_argument("--warmup", type=int, default=2, help="timm steps left out of its median")
    parser.add_argument("--who", default="ours,timm", help="ours, timm or both (comma-separated)")
    parser.add_argument("--timm-malloc", choices=sorted(malloc.SETTINGS), default=malloc.DEFAULT,
                        help="timm's glibc malloc: keep the memory it frees (default) or as installed "
                             "(bench/peers/malloc.py)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="ours: use the user's kernel-choice cache (default: a new empty one per run)")
    parser.add_argument("--timm-worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timm_worker:
        timm_worker(args.timm_worker, args.folder, args.batch, args.size, args.warmup)
        return
    networks = args.networks.split(",")
    unknown = [n for n in networks if n not in TIMM_NAMES or not (ZOO / f"{n}.yaml").exists()]
    if unknown:
        parser.error(f"--networks: no zoo file or timm name for {', '.join(unknown)} (bench/peers/timm_zoo.py)")
    if args.steps <= max(1, args.warmup):
        parser.error(f"--steps must exceed --warmup ({args.warmup}) and 1")
    print(json.dumps({"machine": machine(), "batch": args.batch, "steps": args.steps, "size": args.size or "file's own",
                      "kernel_cache": "the user's" if args.warm_cache else "new and empty per run",
                      "timm_malloc": malloc.described(args.timm_malloc)}), flush=True)
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "images", args.batch * args.steps)
        for network in networks:
            runs = {"ours": [], "timm": []}
            failed = None
            for round_ in range(args.rounds):
                order = ("ours", "timm") if round_ % 2 == 0 else ("timm", "ours")
                for who in (w for w in order if w in args.who.split(",") and not failed):
                    try:
                        result = ours(network, folder, Path(tmp), args) if who == "ours" else theirs(network, folder, args)
                    except RuntimeError as error:  # e.g. `train`'s memory guard refuses the batch
                        failed = f"{who}: {str(error).strip().splitlines()[-1]}"
                        print(json.dumps({"network": network, "who": who, "round": round_ + 1, "failed": str(error)}),
                              flush=True)
                        continue  # the next network still runs; this one's pairs so far count
                    runs[who].append(result)
                    print(json.dumps({"network": network, "who": who, "round": round_ + 1, **result,
                                      "load": os.getloadavg()}), flush=True)
            ratios = [a["images_per_second"] / b["images_per_second"] for a, b in zip(runs["ours"], runs["timm"])]
            summary[network] = {"timm_name": TIMM_NAMES[network][0],
                                "ratio": round(statistics.median(ratios), 3) if ratios else None,
                                **({"failed": failed} if failed else {})}
            for key in ("images_per_second", "first_step_extra_s", "first_step_cpu_s", "later_step_cpu_s",
                        "first_step_system_s", "first_step_faults_m", "first_step_s", "end_s"):
                for who, rs in runs.items():
                    values = [r[key] for r in rs if r.get(key) is not None]
                    summary[network][f"{who}_{key}"] = statistics.median(values) if values else None
            gflop = training_gflop(network, args.size)
            for who in runs:
                speed = summary[network][f"{who}_images_per_second"]
                summary[network][f"{who}_gflop_per_s"] = None if speed is None else round(gflop * speed, 1)
    print(json.dumps({"summary": summary, "load": os.getloadavg()}, indent=1), flush=True)
    columns = {"ours, images/s": "ours_images_per_second", "timm, images/s": "timm_images_per_second",
               "ratio": "ratio", "ours / timm, GFLOP/s (6 x MACs)": ("ours_gflop_per_s", "timm_gflop_per_s"),
               "ours: first step extra, s": "ours_first_step_extra_s",
               "timm: first step extra, s": "timm_first_step_extra_s",
               "ours: first step / later step, CPU s": ("ours_first_step_cpu_s", "ours_later_step_cpu_s"),
               "timm: first step / later step, CPU s": ("timm_first_step_cpu_s", "timm_later_step_cpu_s"),
               "first step's system CPU s, ours / timm": ("ours_first_step_system_s", "timm_first_step_system_s"),
               "first step's minor page faults (millions), ours / timm": ("ours_first_step_faults_m", "timm_first_step_faults_m"),
               "ours: start to first step end, s": "ours_first_step_s",
               "timm: start to first step end, s": "timm_first_step_s",
               "ours: last step to exit, s": "ours_end_s", "timm: last step to exit, s": "timm_end_s"}

    def cell(keys, row) -> str:
        keys = (keys,) if isinstance(keys, str) else keys
        return " / ".join("—" if row[k] is None else f"{row[k]:g}" for k in keys)

    print("\n| network | timm model | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 2))
    for network, row in summary.items():
        print(f"| {network} | {row['timm_name']} | " + " | ".join(cell(k, row) for k in columns.values()) + " |")
    for network, row in summary.items():
        if "failed" in row:
            print(f"\n{network}: a run failed, later rounds not run ({row['failed']})")

if __name__ == "__main__":
    main()
