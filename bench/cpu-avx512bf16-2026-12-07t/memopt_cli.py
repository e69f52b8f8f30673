"""Needs commit 4f98c14 or 0cc6f81 (set_train_rewrites with the scheduling level; reverted after).
cli.py with grappler's memory optimizer at TensorFlow's default level when MEMOPT=default (the
A/B of memopt_ab.sh; otherwise train's scheduling level, 4f98c14)."""
import os
import sys
from pathlib import Path

sys.argv = ["cli.py"] + sys.argv[1:]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
if os.environ.get("MEMOPT") == "default":
    from archbuilder.training import grappler_rounds

    grappler_rounds.gpu_present = lambda: True  # set_train_rewrites keeps the default level
from archbuilder.cli import run  # noqa: E402

run()
