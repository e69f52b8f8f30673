"""`train` as a real process on real photos: the run folder, kill -9 and resume, Ctrl-C, NaN."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from train_support import REPO, TINY_SPEC, cli, cli_env, image_folder

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
    result = cli("train", TINY_SPEC, "--data", photos, "--test", photos, "--epochs", "3", "--out", run)
    assert result.returncode == 0, result.stderr
    assert "Epoch 3/3" in result.stdout  # the progress bar, per epoch
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert _no_temporary_files(run) == []
    losses = [float(row["loss"]) for row in _history(run)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluation"]["images"] == 90 and len(metrics["evaluation"]["confusion_matrix"]) == 3
    assert (run / "classes.txt").read_text().split() == ["0", "1", "2"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0003.keras"]
    # The resolved spec is a valid spec again.
    assert cli("validate", run / "spec.yaml").returncode == 0


def _start(run, photos, epochs, *extra):
    return subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "train", str(TINY_SPEC), "--data", str(photos), "--epochs", str(epochs),
         "--out", str(run), "--quiet", *extra],
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


def test_killed_run_resumes_from_its_last_epoch_with_optimizer_state(tmp_path, photos):
    import keras

    run = tmp_path / "run"
    epochs = 8
    process = _start(run, photos, epochs)
    _wait_for_epoch(process, run, 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = json.loads((run / "state.json").read_text())["epochs_done"]
    assert 2 <= done < epochs, "the kill should land mid-run"
    result = cli("train", "--resume", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"resuming {run} after epoch {done}" in result.stderr
    assert [int(row["epoch"]) for row in _history(run)] == list(range(1, epochs + 1))
    state = json.loads((run / "state.json").read_text())
    model = keras.saving.load_model(run / "checkpoints" / state["checkpoint"])
    steps = 6  # 90 images, batch 16
    assert int(model.optimizer.iterations.numpy()) == epochs * steps  # continued, not restarted


def test_ctrl_c_stops_cleanly_keeping_the_last_finished_epoch(tmp_path, photos):
    run = tmp_path / "run"
    process = _start(run, photos, 200)
    _wait_for_epoch(process, run, 1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and f"train --resume {run}" in stderr and "Traceback" not in stderr
    metrics = json.loads((run / "metrics.json").read_text())
    state = json.loads((run / "state.json").read_text())
    assert metrics["interrupted"] and metrics["epochs_done"] == state["epochs_done"] < 200
    assert _no_temporary_files(run) == []


def test_nan_loss_stops_with_a_clear_message(tmp_path, photos):
    result = cli("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--quiet",
                 "--set", "training.optimizer=sgd", "--set", "training.learning_rate=1e30")
    assert result.returncode == 2, result.stderr
    assert "loss became NaN or infinite at epoch 1" in result.stderr and "Traceback" not in result.stderr
