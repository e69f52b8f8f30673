"""Shared pieces of the data/train/evaluate tests: real images from the shared dataset, a tiny spec,
the CLI run in-process (CliRunner) or as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from archbuilder.runtime import configure_tensorflow_environment

configure_tensorflow_environment()  # before anything imports TensorFlow, as the CLI does

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / ".." / "shared" / "datasets" / "sign-language-digits" / "images"
TINY_SPEC = REPO / "tests" / "specs" / "tiny_train.yaml"


def image_folder(root: Path, classes=("0", "1", "2"), per_class: int = 20) -> Path:
    """A class folder of symlinks to the first `per_class` real photos of each class (no copies)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in classes:
        (root / name).mkdir()
        for source in sorted((IMAGES / name).iterdir())[:per_class]:
            (root / name / source.name).symlink_to(source.resolve())
    return root


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
    tests/conftest.py's run_cli_in_process gives the same as a CompletedProcess."""
    from click.testing import CliRunner

    from archbuilder.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
