"""Where one training step's oneDNN time goes in ours and in timm's, primitive by primitive.

    .venv/bin/python bench/onednn_primitives.py resnet50 [--batch 32] [--top 30]

TensorFlow (with oneDNN on, as runtime.py sets it) and PyTorch both hand their convolutions to
oneDNN, which logs every primitive it runs under ONEDNN_VERBOSE=1: the implementation it chose
(brg_conv_fwd:avx512_core, jit_1x1:...) and its milliseconds. Training steps of
architectures/imagenet/NETWORK.yaml (10 classes, the switches `train` makes:
bench/fused_kernels.py `make`, grouped convolutions on `native`, the timed kernel switches as the
user's cache decided them, paddings folded: training/fused_padding.py) and of timm's same network
(bench/peers/timm_zoo.py, channels-last, Adam, its memory kept: bench/peers/malloc.py) run in two
processes under the log, after three warm-up steps each (then --steps logged steps; medians per
call). Ours runs with one inter-op thread, so no two primitives share the cores and each
primitive's time is its own, as in PyTorch, which runs one op at a time (the step itself is ~3%
faster with two; bench/RESULTS.md, eleventh session).

Printed: each framework's total per primitive kind, then the convolutions by pass and shape
(oneDNN's problem descriptor without its padding: TensorFlow's SAME, the odd row after the map,
and PyTorch's padding on both sides cost the same): the shapes both networks have first, timm's
costliest first, with ours / timm per call, and what ours would take at timm's call counts. A
shape only one side has is a difference of the two networks (the zoo's ResNet-50 pools to 55x55
as the notebook's does, timm's to 56x56), a layer ours runs outside oneDNN (Winograd's, the 1x1
matrix products), or a convolution over a padded copy (a ZeroPadding2D before a strided VALID
convolution: ih58oh28 against ih56oh28). bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import malloc  # noqa: E402
from bench.peers.timm_zoo import TIMM_NAMES  # noqa: E402

START, END = "=====step=====", "=====end====="
WARMUP = 3


def _marked_steps(step, count: int) -> None:
    """Run `step` WARMUP times, then `count` times between the markers the parent cuts the log at."""
    for _ in range(WARMUP):
        step()
    sys.stdout.flush()
    os.write(1, (START + "\n").encode())  # oneDNN writes its lines with printf: no Python buffer between
    for _ in range(count):
        step()
    sys.stdout.flush()
    os.write(1, (END + "\n").encode())


def ours_worker(network: str, batch: int, steps: int) -> None:
    from bench.fused_kernels import make, switch_as_train  # sets TensorFlow's environment first

    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = make(network, [])
    switch_as_train(model, batch, lambda message: print(message, file=sys.stderr))
    x = np.random.RandomState(0).uniform(0, 255, (batch, *model.input_shape[1:])).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % 10, 10)
    _marked_steps(lambda: model.train_on_batch(x, y), steps)


def timm_worker(network: str, batch: int, size: int, steps: int) -> None:
    import torch

    from bench.peers.timm_zoo import create_timm_model

    torch.manual_seed(0)
    model = create_timm_model(TIMM_NAMES[network][0], 10).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch) % 10

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(x), y)
        loss.backward()
        optimizer.step()
        float(loss)

    _marked_steps(step, steps)


def primitive_times(log: str, steps: int) -> tuple[collections.Counter, dict]:
    """From a oneDNN verbose log of `steps` steps cut at the markers: milliseconds a step per
    primitive kind, and per convolution (pass, shape) [median milliseconds a call, calls a step,
    implementations]. Medians: one step's calls are few, and a call now and then waits for memory
    or another process."""
    lines = log.split(START + "\n", 1)[-1].split(END, 1)[0].splitlines()
    kinds, calls = collections.Counter(), {}
    for line in lines:
        fields = line.split(",")
        if len(fields) < 10 or fields[0] != "onednn_verbose" or "exec" not in fields[:4]:
            continue
        at = fields.index("exec")  # onednn_verbose,[v1,]primitive,exec,cpu,KIND,IMPL,PASS,...,SHAPE,MS
        kind, implementation, direction = fields[at + 2], fields[at + 3], fields[at + 4]
        milliseconds = float(fields[-1])
        kinds[kind] += milliseconds / steps
        if kind == "convolution":
            shape = re.sub(r"p[hwd]\d+", "", fields[-2])
            entry = calls.setdefault((direction, shape), ([], set()))
            entry[0].append(milliseconds)
            entry[1].add(implementation)
    return kinds, {key: [statistics.median(times), len(times) / steps, implementations]
                   for key, (times, implementations) in calls.items()}


def onednn_build(log: str) -> str:
    """oneDNN's version and threading runtime, from the verbose log's header lines."""
    found = re.search(r"info,(oneDNN v[^ ,]+).*?info,cpu,runtime:([^,]+),nthr:(\d+)", log, re.S)
    return f"{found[1]}, {found[2]} runtime, {found[3]} threads" if found else "oneDNN's version not logged"


def _run(arguments: list[str], env: dict) -> str:
    result = subprocess.run([sys.executable, __file__, *arguments], env={**env, "ONEDNN_VERBOSE": "1"},
                            capture_output=True, text=True)
    if result.returncode or START not in result.stdout:
        raise SystemExit(f"{' '.join(arguments)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", help="a file of architectures/imagenet/ without .yaml, with a timm name")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--steps", type=int, default=3, help="steps logged, after %d warm-up steps" % WARMUP)
    parser.add_argument("--worker", choices=["ours", "timm"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps: at least 1")
    if args.worker == "ours":
        return ours_worker(args.network, args.batch, args.steps)
    if args.worker == "timm":
        return timm_worker(args.network, args.batch, args.size, args.steps)
    if args.network not in TIMM_NAMES:
        parser.error(f"{args.network}: no timm name in bench/peers/timm_zoo.py (known: {', '.join(TIMM_NAMES)})")

    from bench.zoo_speed import zoo_input_size, machine

    print(machine())
    common = [args.network, "--batch", str(args.batch), "--steps", str(args.steps)]
    timm = [*common, "--worker", "timm", "--size", str(zoo_input_size(args.network))]
    logs = {"ours": _run([*common, "--worker", "ours"], dict(os.environ)),
            f"timm {TIMM_NAMES[args.network][0]}": _run(timm, malloc.peer_environment(malloc.DEFAULT))}
    ours, theirs = (primitive_times(log, args.steps) for log in logs.values())
    for (name, log), (kinds, _) in zip(logs.items(), (ours, theirs)):
        print(f"{name} ({onednn_build(log)}), a step: "
              + ", ".join(f"{kind} {ms:.0f} ms" for kind, ms in kinds.most_common()))
    compare(ours[1], theirs[1], args.top)


def compare(ours: dict, theirs: dict, top: int) -> None:
    """Print the convolutions of primitive_times, ours against timm's: the shapes both have first."""
    empty = [0.0, 0, set()]

    def per_step(side, key):
        median, calls, _ = side.get(key, empty)
        return median * calls

    both = sorted(set(ours) & set(theirs), key=lambda k: -per_step(theirs, k))
    # Ours at timm's counts: what the shapes both networks have would cost us, call for call.
    at_their_counts = sum(ours[k][0] * theirs[k][1] for k in both)
    their_total = sum(per_step(theirs, k) for k in both)
    ratio = f"{at_their_counts / their_total:.3f}" if their_total else "-"
    only_ours = sum(per_step(ours, k) for k in ours if k not in theirs)
    only_theirs = sum(per_step(theirs, k) for k in theirs if k not in ours)
    print(f"convolution shapes both have: {len(both)}; at timm's calls a step ours {at_their_counts:.0f} ms, "
          f"timm {their_total:.0f} ms (ours / timm {ratio}); shapes only ours has {only_ours:.0f} ms a step, "
          f"only timm {only_theirs:.0f} ms")
    print("\n| pass | shape | ours: ms a call (calls a step) | timm: ms a call (calls) | ours / timm "
          "| implementations (ours / timm) |")
    print("|---|---|---|---|---|---|")
    only = sorted(set(ours) ^ set(theirs), key=lambda k: -max(per_step(ours, k), per_step(theirs, k)))
    for key in (both + only)[:top]:
        a, b = ours.get(key, empty), theirs.get(key, empty)
        ratio = f"{a[0] / b[0]:.2f}" if a[1] and b[1] else "-"
        print(f"| {key[0]} | {key[1]} | {a[0]:.2f} ({a[1]:g}) | {b[0]:.2f} ({b[1]:g}) | {ratio} | "
              f"{' '.join(sorted(a[2])) or '-'} / {' '.join(sorted(b[2])) or '-'} |")

if __name__ == "__main__":
    main()
