"""Mutation fuzz of exported models: a few bytes of the project's own exports changed, each mutant
opened and run as `predict` does, counting what no file may cause: a crash of the process (a
signal, as LiteRT's interpreter dies on some damaged `.tflite` files) or a traceback (an
exception other than archbuilder's UserError).

    nice .venv/bin/python bench/export_fuzz.py [--mutants 2000] [--seed 0] [--write]

Exports of the tiny spec (tests/specs/tiny_train.yaml, seeded weights): LiteRT float32, float16
and int8, ONNX, and a SavedModel (its saved_model.pb mutated). Each mutant has 4-8 bytes set to
random values at random offsets (issue 20's recipe). Mutants run one after another in a worker
process; when the worker dies, that mutant is a crash and a new worker takes the rest. `--raw`
runs LiteRT's interpreter or ONNX Runtime directly on the `.tflite` and `.onnx` mutants instead
(what `predict` did before it opened them in a child process), which shows how many mutants
crash the runtimes themselves.
With --write, the counts go to the `## Export fuzzing` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "RESULTS.md"
TINY_SPEC = REPO / "tests" / "specs" / "tiny_train.yaml"
IMAGES = REPO.parent / "shared" / "datasets" / "sign-language-digits" / "images"
RAW_ADDRESS_SPACE = 4 * 2**30  # NumPy and LiteRT need ~1 GiB of address space; mutants get the rest
WORKER_ADDRESS_SPACE = 16 * 2**30  # TensorFlow reserves several GiB it never touches
FORMATS = ("litert-float32", "litert-float16", "litert-int8", "onnx", "saved_model")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """4 to 8 bytes at random offsets set to random values."""
    mutant = bytearray(data)
    for _ in range(rng.randint(4, 8)):
        mutant[rng.randrange(len(mutant))] = rng.randrange(256)
    return bytes(mutant)


def write_mutants(source: Path, folder: Path, count: int, seed: int) -> list[Path]:
    """`count` mutants of the export `source` (a file, or a SavedModel folder whose saved_model.pb
    is mutated) under `folder`, the same ones for the same seed and source."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        if source.is_dir():
            target = folder / f"m{index:05d}"
            shutil.copytree(source, target)
            pb = target / "saved_model.pb"
            pb.write_bytes(mutate(pb.read_bytes(), rng))
        else:
            target = folder / f"m{index:05d}{source.suffix}"
            target.write_bytes(mutate(source.read_bytes(), rng))
        paths.append(target)
    return paths


def make_exports(folder: Path, formats=FORMATS) -> dict[str, Path]:
    """The tiny spec's model (seeded weights) exported as archbuilder writes exports."""
    from archbuilder.runtime import configure_tensorflow_environment

    configure_tensorflow_environment()
    import keras
    import numpy as np

    import archbuilder
    from archbuilder.data.images import load_image_files
    from archbuilder.export.formats import write_export

    keras.utils.set_random_seed(0)
    model = archbuilder.build(TINY_SPEC)
    photos = [sorted((IMAGES / str(c)).iterdir())[i] for c in range(3) for i in range(4)]
    calibration = load_image_files(photos, (32, 32, 3)).astype(np.float32) / np.float32(255.0)
    metadata = {"class_names": ["0", "1", "2"], "input_shape": [32, 32, 3]}
    made = {}
    for name in formats:
        kind, _, quantize = name.partition("-")
        out = folder / {"litert": f"m-{quantize}.tflite", "onnx": "m.onnx", "saved_model": "sm"}[kind]
        write_export(model, kind, out, metadata, None if quantize in ("", "float32") else quantize,
                     calibration if quantize == "int8" else None)
        made[name] = out
    return made


# ---- the worker: one process running mutants until it dies --------------------------------------


def _worker(raw: bool) -> None:
    """Read mutant paths from stdin, one a line; answer one JSON line each."""
    import numpy as np

    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    answers = os.fdopen(os.dup(1), "w")  # the answers' own pipe: what native code prints goes to stderr
    os.dup2(2, 1)
    # A mutant declaring huge tensors fails to allocate, rather than filling a shared machine
    # (the runtimes' child processes inherit the limit). TensorFlow needs more address space.
    import resource

    limit = RAW_ADDRESS_SPACE if raw else WORKER_ADDRESS_SPACE
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if not raw:
        from archbuilder.runtime import configure_tensorflow_environment

        configure_tensorflow_environment()
        from archbuilder.errors import UserError
        from archbuilder.export.runtimes import open_exported
    for line in sys.stdin:
        path = os.fsdecode(bytes.fromhex(line.strip()))
        try:
            if raw:
                (_raw_onnx if path.endswith(".onnx") else _raw_litert)(path, x)
            else:
                model = open_exported(path)
                model.predict_uint8(x if model.input_shape == x.shape[1:] else np.zeros((1, *model.input_shape), np.uint8))
            answer = {"status": "ok"}
        except Exception as error:  # noqa: BLE001 - which kind it is, is the finding
            first = (str(error).strip().splitlines() or [""])[0][:200]
            status = "refused" if not raw and isinstance(error, UserError) else ("error" if raw else "traceback")
            answer = {"status": status, "detail": f"{type(error).__name__}: {first}"}
        print(json.dumps(answer), file=answers, flush=True)


def _raw_litert(path: str, x) -> None:
    """What `predict` did with a .tflite before: LiteRT's interpreter in this process."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(given["index"], [len(x), *given["shape"][1:]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], np.zeros([len(x), *given["shape"][1:]], given["dtype"]))
    interpreter.invoke()
    interpreter.get_tensor(output["index"])


def _raw_onnx(path: str, x) -> None:
    """What `predict` did with an .onnx before: ONNX Runtime in this process."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    shape = [len(x)] + [d if isinstance(d, int) else 1 for d in given.shape[1:]]
    session.run(None, {given.name: np.zeros(shape, np.float32)})


def run_mutants(paths: list[Path], raw: bool = False, timeout: float = 120) -> list[dict]:
    """One outcome per path: {"status": ok | refused | traceback | error | crash | hang, "detail"}.
    A worker that dies (or takes over `timeout` s on one mutant) is replaced for the rest."""
    outcomes: list[dict] = []
    # archbuilder refuses what declares more than this before LiteRT allocates it (issue 20, item 2).
    env = {"ARCHBUILDER_MAX_MEMORY": "1GiB", **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    while len(outcomes) < len(paths):
        worker = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"] + (["--raw"] if raw else []),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, cwd=REPO, env=env)
        hung = False
        try:
            while len(outcomes) < len(paths):
                worker.stdin.write(os.fsencode(paths[len(outcomes)]).hex() + "\n")
                worker.stdin.flush()
                line = _read_line(worker, timeout)
                if not line:
                    hung = line is None
                    break
                outcomes.append(json.loads(line))
        except BrokenPipeError:
            pass
        if len(outcomes) < len(paths):  # the worker died (or hung) on this mutant
            if hung:
                worker.kill()
            code = worker.wait()
            detail = "timeout" if hung else (signal.Signals(-code).name if code < 0 else f"exit {code}")
            outcomes.append({"status": "hang" if hung else "crash", "detail": detail})
        else:
            worker.stdin.close()
            worker.wait()
    return outcomes


def _read_line(worker: subprocess.Popen, timeout: float) -> str | None:
    import select

    ready, _, _ = select.select([worker.stdout], [], [], timeout)
    if not ready:
        return None  # hung
    return worker.stdout.readline()  # "" when the worker died


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=2000, help="mutants per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--raw", action="store_true", help="the runtimes directly (.tflite and .onnx only)")
    parser.add_argument("--write", action="store_true", help="record the counts in bench/RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.raw)
        return
    formats = [f for f in args.formats.split(",") if not args.raw or f != "saved_model"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="archbuilder-export-fuzz-") as folder:
        exports = make_exports(Path(folder), formats)
        for index, name in enumerate(formats):
            start = time.perf_counter()
            paths = write_mutants(exports[name], Path(folder) / f"mutants-{name}", args.mutants, args.seed + index)
            outcomes = run_mutants(paths, raw=args.raw)
            counts = Counter(o["status"] for o in outcomes)
            seconds = time.perf_counter() - start
            rows.append((name, counts, seconds))
            print(f"{name}: {len(outcomes)} mutants, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                  + f" ({seconds:.0f} s)", flush=True)
            for outcome in outcomes:
                if outcome["status"] in ("traceback", "crash", "hang") and not args.raw:
                    print(f"  {outcome}", flush=True)
            shutil.rmtree(Path(folder) / f"mutants-{name}")
    if args.write:
        _write(rows, args)


def _write(rows, args) -> None:
    statuses = ("ok", "refused", "error", "traceback", "crash", "hang")
    lines = [
        "## Export fuzzing" + (" (the runtimes directly)" if args.raw else ""), "",
        f"`nice .venv/bin/python bench/export_fuzz.py --mutants {args.mutants} --seed {args.seed}"
        f"{' --raw' if args.raw else ''} --write` ({time.strftime('%Y-%m-%d')}, `uptime`: "
        f"{os.getloadavg()[0]:.1f} load; a shared machine).", "",
        "| format | mutants | " + " | ".join(statuses) + " | seconds |",
        "|---|---|" + "---|" * len(statuses) + "---|",
    ]
    for name, counts, seconds in rows:
        lines.append(f"| {name} | {sum(counts.values())} | " + " | ".join(str(counts.get(s, 0)) for s in statuses)
                     + f" | {seconds:.0f} |")
    lines += ["", (
        "Each mutant is an export of the tiny spec with 4-8 random bytes set (issue 20's recipe). "
        + ("The runtimes run in this worker process, as `predict` ran them before issue 20: `crash` counts "
           "mutants that killed it (SIGSEGV, SIGBUS, SIGABRT), `error` the runtime's own exceptions."
           if args.raw else
           "`ok`: predicted; `refused`: archbuilder's one-line UserError (most: `not a loadable LiteRT model "
           "(The model is not a valid Flatbuffer buffer)`; crashes of the runtime inside its child process "
           "are refused too); `traceback` and `crash` must stay 0. Full run: "
           "`nice .venv/bin/python bench/export_fuzz.py --mutants 2000 --write` (~0.4 s a mutant: each "
           "opens a child process).")), ""]
    text = RESULTS.read_text(encoding="utf-8")
    heading = lines[0] + "\n"
    section = "\n".join(lines) + "\n"
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
