"""`validate` of every shipped spec takes at most 15% of the wall time of `import tensorflow`.

Both are whole processes started the same way, alternating, so the shared machine's noise hits
both sides alike; the figure is the ratio of medians.

    .venv/bin/python bench/validate_speed.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# architectures/blocks/ holds block libraries that specs import, not specs.
SPECS = sorted(str(p.relative_to(REPO)) for p in (REPO / "architectures").rglob("*.yaml") if p.parent.name != "blocks")
COMMANDS = {
    "validate": [sys.executable, "cli.py", "validate", *SPECS],
    "import tensorflow": [sys.executable, "-c", "import tensorflow"],
}


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    for command in COMMANDS.values():
        wall_time(command)  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name}: median {value:.3f}s over {args.repeats} runs")
    print(f"validate of {len(SPECS)} specs / import tensorflow: {medians['validate'] / medians['import tensorflow']:.3f}")


if __name__ == "__main__":
    main()
