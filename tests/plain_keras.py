"""Predict with model files in plain Keras: a `python -I -S` subprocess in which archbuilder cannot
be imported, as a user's own Python that has never heard of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

# `-I -S`: no site-packages processing, so the editable install's path hook for archbuilder is
# never read; only the venv's site-packages folder is put on sys.path, where keras and tensorflow
# live. The script proves archbuilder cannot be imported before loading anything.
SCRIPT = """
import json, sys
sys.path.append(sys.argv[1])
try:
    import archbuilder
except ImportError:
    pass
else:
    raise SystemExit("archbuilder is importable here: " + archbuilder.__file__)
import numpy as np
import keras
for job in json.load(open(sys.argv[2])):
    model = keras.models.load_model(job["model"], safe_mode=True)
    inputs = [np.load(path) for path in job["inputs"]]
    np.save(job["output"], np.asarray(model(inputs if len(inputs) > 1 else inputs[0], training=False)))
print("archbuilder" in sys.modules, keras.__version__)
"""


def predict_in_plain_keras(models: list[tuple[Path, list[np.ndarray]]], workdir: Path) -> list[np.ndarray]:
    """Each model file's predictions on its inputs (one array per model input), from plain Keras."""
    jobs = []
    for index, (path, inputs) in enumerate(models):
        names = []
        for position, array in enumerate(inputs):
            names.append(str(workdir / f"plain-x{index}-{position}.npy"))
            np.save(names[-1], array)
        jobs.append({"model": str(path), "inputs": names, "output": str(workdir / f"plain-y{index}.npy")})
    (workdir / "plain-jobs.json").write_text(json.dumps(jobs))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    process = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, sysconfig.get_paths()["purelib"], str(workdir / "plain-jobs.json")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.split()[0] == "False"  # archbuilder was never imported
    return [np.load(job["output"]) for job in jobs]
