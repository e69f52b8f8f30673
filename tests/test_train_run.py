"""`train` on real photos: the run folder, NaN; kill -9, resume and Ctrl-C in real processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from train_support import IMAGES, REPO, TINY_SPEC, cli_env, image_folder, invoke, run_cli_in_process

RUN_FILES = {
    "best.keras", "checkpoints", "classes.txt", "confusion_matrix.png", "curves.png", "history.csv",
    "metrics.json", "run.json", "spec.yaml", "state.json",
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=30)


def _history(run):
    with open(run / "history.csv") as handle:
        return list(csv.DictReader(handle))


def _no_temporary_files(run):
    return [p.name for p in run.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def test_tiny_spec_trains_loss_falls_and_every_run_file_appears(tmp_path, photos):
    run = tmp_path / "run"
    result = invoke("train", TINY_SPEC, "--data", photos, "--test", photos, "--epochs", "3", "--out", run, "--h5")
    assert result.exit_code == 0, result.output
    assert "Epoch 3/3" in result.output  # the progress bar, per epoch
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert _no_temporary_files(run) == []
    losses = [float(row["loss"]) for row in _history(run)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluation"]["images"] == 90 and len(metrics["evaluation"]["confusion_matrix"]) == 3
    assert (run / "classes.txt").read_text().split() == ["0", "1", "2"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0003.keras"]
    assert invoke("validate", run / "spec.yaml").exit_code == 0  # the resolved spec is a spec again
    # --h5: the best model in Keras's HDF5 format too, readable by layer name into the spec's model.
    import numpy as np

    from archbuilder.keras.graph import build_model
    from archbuilder.keras.model_files import open_model_file
    from archbuilder.plan.validate import load_checked_spec
    from archbuilder.keras.weights_h5 import load_h5_weights

    rebuilt = build_model(load_checked_spec(run / "spec.yaml").spec)
    assert load_h5_weights(rebuilt, run / "best.h5", strict=True).missing_in_file == []
    x = np.random.default_rng(0).random((2, *rebuilt.input_shape[1:]), dtype="float32")
    best = open_model_file(run / "best.keras")
    np.testing.assert_allclose(rebuilt.predict_on_batch(x), best.predict_on_batch(x), atol=1e-6)


def test_a_run_folder_is_never_overwritten(tmp_path, photos):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "already exists and is not empty" in result.output


@pytest.mark.slow  # a real process; by default test_faults.py's SIGKILL test
def test_a_start_killed_before_run_json_is_started_over_by_the_same_command(tmp_path, photos):
    """train writes spec.yaml, classes.txt, then run.json; a kill in between leaves the first two
    (and maybe a temporary of the third). The same command starts the run over; other settings,
    which would replace those files with other content, are refused and change nothing."""
    import shutil

    args = ("train", TINY_SPEC, "--data", photos, "--epochs", "1", "--quiet")
    assert invoke(*args, "--out", tmp_path / "finished").exit_code == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("spec.yaml", "classes.txt"):  # what that start wrote before run.json
        shutil.copy(tmp_path / "finished" / name, killed / name)
    (killed / ".run.json.k1ll3d.tmp.json").write_text('{"spec_source": ')  # atomic_path's half-written file
    before = {path.name: path.read_bytes() for path in killed.iterdir()}

    resumed = invoke("train", "--resume", killed)
    assert resumed.exit_code == 2 and "stopped while starting" in resumed.output, resumed.output
    other = invoke(*args, "--set", "training.learning_rate=0.5", "--out", killed)
    assert other.exit_code == 2 and "already exists and is not empty" in other.output, other.output
    assert {path.name: path.read_bytes() for path in killed.iterdir()} == before

    again = invoke(*args, "--out", killed)
    assert again.exit_code == 0, again.output
    assert len(_history(killed)) == 1
    assert _no_temporary_files(killed) == []


def test_nan_loss_stops_with_a_clear_message(tmp_path, photos):
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--quiet",
                    "--set", "training.optimizer=sgd", "--set", "training.learning_rate=1e30")
    assert result.exit_code == 2, result.output
    assert "loss became NaN or infinite at epoch 1" in result.output


def _start(args):
    return subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), *map(str, args), "--quiet"],
        cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_epoch(process, run, epoch, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "state.json").exists() and json.loads((run / "state.json").read_text())["epochs_done"] >= epoch:
            return
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.communicate()}")
        time.sleep(0.05)
    pytest.fail("no epoch finished in time")


# `slow` (~16-23 s on a slow CPU): test_faults.py's SIGKILL test kills twice (mid-epoch and during a
# checkpoint write) and checks the same things after its resume, the optimizer's step count too.
@pytest.mark.slow
def test_killed_run_resumes_from_its_last_epoch_with_optimizer_state(tmp_path, photos):
    import keras

    run, epochs = tmp_path / "run", 10
    process = _start(["train", TINY_SPEC, "--data", photos, "--epochs", epochs, "--out", run])
    _wait_for_epoch(process, run, 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads((run / "state.json").read_text())["epochs_done"]
    assert 2 <= killed_at < epochs, "the kill should land mid-run"

    result = run_cli_in_process("train", "--resume", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"resuming {run} after epoch {killed_at}" in result.stderr
    assert [int(row["epoch"]) for row in _history(run)] == list(range(1, epochs + 1))
    assert _no_temporary_files(run) == []
    state = json.loads((run / "state.json").read_text())
    model = keras.saving.load_model(run / "checkpoints" / state["checkpoint"])
    steps = 6  # 90 images, batch 16
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == epochs * steps  # continued, not restarted


@pytest.mark.slow  # a real process; by default test_messages.py's Ctrl-C in the last batch
def test_ctrl_c_stops_cleanly_keeping_the_last_finished_epoch(tmp_path, photos):
    """A real SIGINT, sent to this process (where `train` runs) once an epoch has finished."""
    run = tmp_path / "run"

    def press_ctrl_c():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run / "state.json").exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    result = invoke("train", TINY_SPEC, "--data", photos, "--epochs", "500", "--out", run, "--quiet")
    presser.join()
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and f"train --resume {run}" in result.output
    state = json.loads((run / "state.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] and 1 <= metrics["epochs_done"] == state["epochs_done"] < 500
    assert _no_temporary_files(run) == []


def test_trains_from_a_signs_hdf5_file_using_its_test_split(tmp_path):
    packed = tmp_path / "signs.h5"
    result = invoke("data", "pack", IMAGES, packed, "--size", "32", "--classes", "0,1", "--holdout-photographers", "0.15")
    assert result.exit_code == 0, result.output
    result = invoke("train", TINY_SPEC, "--data", packed, "--epochs", "1", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert "the head was resized to 2" in result.output  # the spec says 3 classes
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "(test_set_*)" in metrics["evaluated_on"] and len(metrics["evaluation"]["per_class"]) == 2
