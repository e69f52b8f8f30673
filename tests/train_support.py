"""What the tests share: the repository's paths and shipped specs, real images from the shared
dataset, a tiny spec, the CLI run in-process (CliRunner) or as a real subprocess. Imported as
`train_support` everywhere (tests/ is on the path), so that there is one module object;
conftest.py keeps pytest's hooks and fixtures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()  # before anything imports TensorFlow, as the CLI does

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
IMAGES = SHARED / "datasets" / "sign-language-digits" / "images"  # the 1,762 sign-language digit photos
TINY_SPEC = REPO / "tests" / "specs" / "tiny_train.yaml"
# Every spec file shipped; architectures/blocks/ holds block libraries that specs import, not specs.
SHIPPED_SPECS = sorted(p for p in (REPO / "architectures").rglob("*.yaml") if "blocks" not in p.relative_to(REPO).parts)
# The model zoo beyond the ResNets (tests/test_zoo.py): 224x224 networks whose Keras builds take
# 3-13 s each here, so tests that build every shipped spec run them only with `-m slow`, except
# ConvNeXt-Tiny, which exercises the zoo's new layer types (layer norm, grouped convolution,
# dense on feature maps, layer scale, normalization constants) in ~3 s.
ZOO_SPECS = sorted(
    p for p in (REPO / "architectures" / "imagenet").glob("*.yaml") if not re.fullmatch(r"resnet\d+\.yaml", p.name)
) + sorted((REPO / "architectures" / "segmentation").glob("*.yaml"))  # the U-Nets: 31M weights, 150-192 GMACs
ZOO_SPECS += sorted((REPO / "architectures" / "detection").glob("*.yaml"))  # RetinaNet: 34M weights, 62 GMACs


def _heavy_build(path: Path) -> bool:
    """The zoo's heavy builds, and ResNet-101/152 (ResNet-50's blocks, repeated: 2-3.5 s each here)."""
    return (path in ZOO_SPECS and path.name != "convnext_tiny.yaml") or path.name in ("resnet101.yaml", "resnet152.yaml")


def shipped_spec_params(paths):
    """pytest parameters for spec files, one id each, the zoo's heavy builds marked slow."""
    return [
        pytest.param(p, id=str(p.relative_to(REPO)),
                     marks=[pytest.mark.slow] if _heavy_build(p) else [])
        for p in paths
    ]



def image_folder(root: Path, classes=("0", "1", "2"), per_class: int = 20) -> Path:
    """A class folder of symlinks to the first `per_class` real photos of each class (no copies)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in classes:
        (root / name).mkdir()
        for source in sorted((IMAGES / name).iterdir())[:per_class]:
            (root / name / source.name).symlink_to(source.resolve())
    return root


def callback_session(root: Path, epochs: int):
    """What `train` hands its callbacks, for tests that run a real `fit` with them: the tiny spec
    built and compiled, 12 real photos of 3 classes (batch 4: three steps an epoch), a Session on
    the run folder root/run. Returns (session, model, x, y, fit's callbacks)."""
    import keras

    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec
    from archbuilder.spec.training import TrainingSpec
    from archbuilder.training.callbacks import Session, callbacks
    from archbuilder.training.distribute import Distribution
    from archbuilder.training.metrics import predict_probabilities
    from archbuilder.training.optimizers import compile_model
    from archbuilder.training.prepare import RunData
    from archbuilder.training.run_dir import RunDir
    from archbuilder.training.run_state import RunState

    folder = image_folder(root / "images", per_class=4)
    training = TrainingSpec(batch_size=4, epochs=epochs)
    data = RunData({"data": str(folder), "test": None, "holdout_photographers": None, "classes_filter": None,
                    "training": training.model_dump(mode="json")}, (32, 32, 3))
    model = build_model(load_checked_spec(TINY_SPEC).spec)
    compile_model(model, training, 3)
    session = Session(RunDir(root / "run"), RunState(), data, {"class_names": list(data.class_names)}, 4, "loss",
                      predict=predict_probabilities)
    x = data.train.x.astype("float32") / 255
    y = keras.utils.to_categorical(data.train.y, 3)
    return session, model, x, y, callbacks(session, model, Distribution("none", None))


def link_split(split, root: Path) -> tuple[Path, Path]:
    """root/train and root/heldout: class folders of symlinks to a `data.sources.FolderSplit`'s kept
    and held-out files, i.e. the photographers a `train --holdout-photographers` run trained on and
    those it never saw (for `export --check`, `--calibration`, or training on the kept ones)."""
    files, folders = split.files, []
    for name, indices in (("train", split.kept), ("heldout", split.held)):
        for index in indices:
            path = Path(files.paths[index])
            target = root / name / files.class_names[files.labels[index]] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.resolve())
        folders.append(root / name)
    return folders[0], folders[1]


def free_ports(count: int) -> list[int]:
    """`count` TCP ports on 127.0.0.1 that were free a moment ago (bound together, then released)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cli(*args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` as a real process."""
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=cli_env(), **popen,
    )


def interruptible() -> None:
    """`preexec_fn` for a child a test sends SIGINT to, as a terminal's Ctrl-C would: SIGINT back
    to its default. A suite started in the background by a non-interactive shell (`pytest &`) runs
    with SIGINT ignored, children inherit that, and a Python started with SIGINT ignored never
    raises KeyboardInterrupt (`train` installs its own handler; other commands rely on Python's)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def invoke(*args, env: dict | None = None):
    """The CLI in this process (TensorFlow is imported once for the whole test module): click's
    Result (exit_code, output, stdout, stderr), with `env` set for the command only. An exception
    escaping the command fails the test with its traceback, as one on a real stderr would.
    run_cli_in_process gives the same as a CompletedProcess."""
    from click.testing import CliRunner

    from archbuilder.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python cli.py ARGS` as a user would, in a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


def run_cli_in_process(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` run by click's CliRunner in this process, returned as `run_cli` returns a
    real one (returncode, stdout, stderr). For tests whose point is the command's result rather than
    its process: a real process pays TensorFlow's import, 7-8 s on a slow CPU, and those imports
    were ~40% of the default suite there. Signals, crashes contained in a child, native lines on
    descriptor 2, memory that could take the machine down and the distributed workers keep real
    processes (`run_cli`). Built on train_support.invoke (click's Result)."""
    result = invoke(*args, env=env)
    return subprocess.CompletedProcess(["cli.py", *map(str, args)], result.exit_code, result.stdout, result.stderr)


def spec_problem_lines(path: Path, content: str | bytes) -> list[str]:
    """Write `content` to `path`, validate it, and return the error's lines (it must fail)."""
    from archbuilder.errors import SpecError
    from archbuilder.plan.validate import load_checked_spec

    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(SpecError) as caught:
        load_checked_spec(path)
    return str(caught.value).splitlines()
