"""Shared test helpers: paths to the repository and ../shared, and a real CLI subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
NOTEBOOK = REFERENCE / "000_1f0476f30310bbb2.txt"
SIGN_DIGITS = SHARED / "datasets" / "sign-language-digits" / "images"
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

# Tests neither read nor write the user's cache folder (training/kernel_choice.py keeps timings
# there); subprocesses inherit this. Tests that check the cache point it at their own tmp_path.
_TEST_CACHE = tempfile.TemporaryDirectory(prefix="archbuilder-test-cache-")
os.environ["ARCHBUILDER_CACHE_DIR"] = _TEST_CACHE.name


# Worker processes for `-n auto` (pyproject.toml's addopts): one per core, at most MAX_WORKERS and
# as many as the memory holds. TensorFlow's thread pools already spread one test's ops over every
# core; what a second process overlaps is the single-threaded rest: Python building graphs (~0.9 ms
# an op), grappler, the CLI processes' start-ups, decoding and file writes. On the 2-core EPYC two
# workers ran the default suite in 349-389 s against 675 s in one process (bench/RESULTS.md,
# 2026-12-05), each test ~1.09x its time alone. A worker peaked at 2.4 GiB, 3 with the processes
# its tests start (5.5 GiB for both together, sampled every 0.5 s). Measured with two workers only:
# four is a guess that stays well inside the memory of the machines we have.
MAX_WORKERS = 4
WORKER_PEAK_BYTES = 3 * 2**30


def pytest_xdist_auto_num_workers(config) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(cores, MAX_WORKERS, memory // WORKER_PEAK_BYTES))


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
    from train_support import invoke

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


@pytest.fixture(scope="session")
def notebook_text() -> str:
    return NOTEBOOK.read_text(encoding="utf-8")
