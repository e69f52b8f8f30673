"""Decode time of load_image_files (held data: every photo decoded once before training) at the code
in the folder argv[1] (a worktree of another commit, or the repository): 800 sign photos at 64x64x3,
three timed calls after one that traces.

    git worktree add /tmp/wt448 448db9c
    for r in 1 2 3; do for code in /tmp/wt448 .; do .venv/bin/python bench/cpu-avx512bf16-2026-12-07v/decode_ab.py $code; done; done
"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from archbuilder.data.images import load_image_files
root = Path("/work/shared/datasets/sign-language-digits/images")
paths = sorted(p for c in sorted(root.iterdir()) for p in sorted(c.iterdir()))[:800]
load_image_files(paths[:32], (64, 64, 3))  # trace once
times = []
for _ in range(3):
    start = time.perf_counter(); load_image_files(paths, (64, 64, 3)); times.append(time.perf_counter() - start)
print(sys.argv[1], " ".join(f"{t:.3f}" for t in times), flush=True)
