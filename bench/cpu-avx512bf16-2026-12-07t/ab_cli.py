"""cli.py with the one-function switch off when ONE_FN=0 (the A/B of ab_r152.sh).

    ONE_FN=0 .venv/bin/python bench/cpu-avx512bf16-2026-12-07t/ab_cli.py train ...

(Run as logged, at 762c8b3 plus the switch as `training/one_train_function.py`, training function
only; committed in 654b596 as `unnested_step_functions.py`, which also switches the test function.)
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.argv = ["cli.py"] + sys.argv[1:]
sys.path.insert(0, str(ROOT))
if os.environ.get("ONE_FN") == "0":
    from archbuilder.training import unnested_step_functions

    unnested_step_functions.use_unnested_step_functions = lambda model: False
from archbuilder.cli import run  # noqa: E402

run()
