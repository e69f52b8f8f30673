"""`validate` of every shipped spec takes at most 15% of the wall time of `import tensorflow`.

Both are whole processes started the same way, alternating, so the shared machine's noise hits
both sides alike; the figure is the ratio of medians. `--baseline DIR` (a checkout of another
commit, e.g. `git worktree add /tmp/before HEAD~3`) also times that tree's `validate` of the same
files in the same rounds, for a before/after in one run.

Python's bytecode cache is on for every process, in a temporary folder (PYTHONPYCACHEPREFIX), as
it is for an installed package: pip compiles TensorFlow's modules when it installs them, while an
editable install under PYTHONDONTWRITEBYTECODE=1 would recompile archbuilder's on every start.
The first (untimed) round fills the cache.

    .venv/bin/python bench/validate_speed.py [--repeats 9] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# architectures/blocks/ holds block libraries that specs import, not specs.
SPECS = sorted(str(p.relative_to(REPO)) for p in (REPO / "architectures").rglob("*.yaml") if p.parent.name != "blocks")


def wall_time(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="another checkout whose `validate` is timed in the same rounds")
    args = parser.parse_args()
    commands = {
        "validate": ([sys.executable, "cli.py", "validate", *SPECS], REPO),
        "import tensorflow": ([sys.executable, "-c", "import tensorflow"], REPO),
    }
    if args.baseline:
        # The baseline's own package first on the path (this venv's editable install points here).
        commands["validate (baseline)"] = ([sys.executable, "cli.py", "validate", *SPECS], args.baseline.resolve())
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        envs = {name: {**env, "PYTHONPATH": str(cwd)} for name, (_, cwd) in commands.items()}
        for name, (command, cwd) in commands.items():
            wall_time(command, cwd, envs[name])  # warm the file and bytecode caches
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (command, cwd) in commands.items():
                times[name].append(wall_time(command, cwd, envs[name]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name}: median {value:.3f}s over {args.repeats} runs")
    for name in (n for n in medians if n.startswith("validate")):
        print(f"{name} of {len(SPECS)} specs / import tensorflow: {medians[name] / medians['import tensorflow']:.3f}")


if __name__ == "__main__":
    main()
