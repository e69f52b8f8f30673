"""Issue 13: `train` checks everything before it writes, re-checks on `--resume`, trains a linear
head on logits, estimates training memory, and locks its run folder against a second writer."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from train_support import REPO, TINY_SPEC, cli, cli_env, image_folder, invoke


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=3)


@pytest.fixture(scope="module")
def ten_classes(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("ten") / "images", classes=tuple("0123456789"), per_class=1)


def _refused(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and all(n in lines[0] for n in needles), lines
    return lines[0]


def _hand_made_run(root: Path, photos: Path, state: dict | None, head_units: str = "classes") -> Path:
    """A run folder as `train` writes it before its first epoch (or with `state`)."""
    root.mkdir()
    spec = TINY_SPEC.read_text().replace("units: classes", f"units: {head_units}")
    (root / "spec.yaml").write_text(spec)
    (root / "classes.txt").write_text("0\n1\n2\n")
    (root / "run.json").write_text(json.dumps({
        "spec_source": str(TINY_SPEC), "overrides": [], "data": str(photos), "test": None,
        "holdout_photographers": None, "classes_filter": None, "skip_bad_images": False,
        "training": {"epochs": 1}, "spec_name": "tiny", "input_shape": [32, 32, 3], "class_names": ["0", "1", "2"],
    }))
    if state is not None:
        (root / "state.json").write_text(json.dumps(state))
    return root


# -- item 1: nothing written before every check passes; --resume re-checks -----------------------

@pytest.mark.parametrize("override", ["head.1.units=3", "head=[]"])
def test_a_refused_training_writes_nothing(tmp_path, ten_classes, override):
    out = tmp_path / "run"
    line = _refused(invoke("train", TINY_SPEC, "--set", override, "--data", ten_classes, "--out", out))
    assert "10 classes" in line or "one value per class" in line, line
    assert not out.exists() or not any(out.iterdir())


def test_resume_rechecks_the_model_it_builds(tmp_path, photos):
    run = _hand_made_run(tmp_path / "run", photos, None, head_units="2")
    _refused(invoke("train", "--resume", run), "outputs 2 values", "3 classes")


# -- item 5: state.json is validated ------------------------------------------------------------

def test_resume_refuses_a_state_file_with_a_number_for_a_checkpoint(tmp_path, photos):
    run = _hand_made_run(tmp_path / "run", photos, {"epochs_done": 1, "checkpoint": 5, "best": None, "history": []})
    _refused(invoke("train", "--resume", run), "state.json", "checkpoint")


ROW = {"seconds": 1.0, "loss": 1.0, "accuracy": 0.5}
BEST = {"epoch": 1, "monitor": "loss", "value": 1.0}


@pytest.mark.parametrize("state, needle", [
    # epoch 1's weights would resume as epoch 99's (its learning-rate schedule, its epoch count)
    ({"epochs_done": 99, "checkpoint": "epoch-0001.keras", "best": BEST, "history": [{"epoch": 1, **ROW}]},
     "epochs_done is 99 but the history holds epochs [1]"),
    ({"epochs_done": 1, "checkpoint": "epoch-0003.keras", "best": BEST, "history": [{"epoch": 1, **ROW}]},
     "epochs_done is 1 but the checkpoint is epoch-0003.keras"),
    ({"epochs_done": 2, "checkpoint": "epoch-0002.keras", "best": BEST, "history": [{"epoch": 2, **ROW}, {"epoch": 1, **ROW}]},
     "epochs_done is 2 but the history holds epochs [2, 1]"),
], ids=["epochs-beyond-history", "checkpoint-of-another-epoch", "history-out-of-order"])
def test_resume_refuses_a_state_file_that_contradicts_itself(tmp_path, photos, state, needle):
    run = _hand_made_run(tmp_path / "run", photos, state)
    line = _refused(invoke("train", "--resume", run), "state.json", needle, "not written by train")
    assert "Value error" not in line and "received" not in line  # the check's own words, not pydantic's


# -- item 7: the loss follows the head --------------------------------------------------------------

def test_a_linear_head_trains_on_logits_and_predict_reports_probabilities():
    from archbuilder.keras.graph import build_model
    from archbuilder.spec.training import TrainingSpec
    from archbuilder.plan.validate import load_checked_spec
    from archbuilder.training.optimizers import compile_model
    from archbuilder.training.metrics import predict_probabilities

    linear = build_model(load_checked_spec(TINY_SPEC, ["head.1.activation=linear"]).spec)
    compile_model(linear, TrainingSpec(), 1)
    assert linear.loss.get_config()["from_logits"] is True
    softmax = build_model(load_checked_spec(TINY_SPEC).spec)
    compile_model(softmax, TrainingSpec(), 1)
    assert softmax.loss.get_config()["from_logits"] is False
    images = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 90, 255)])
    for row in predict_probabilities(linear, images):
        assert min(row) >= 0 and math.isclose(float(row.sum()), 1.0, abs_tol=1e-5)  # float32 softmax


@pytest.mark.slow  # trains, then predicts in the CLI: ~15-25 s
def test_a_linear_head_trained_by_the_cli_predicts_probabilities(tmp_path, photos):
    out = tmp_path / "run"
    result = invoke("train", TINY_SPEC, "--set", "head.1.activation=linear", "--data", photos, "--epochs", "1",
                    "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    predicted = invoke("predict", out / "best.keras", photos / "0", "--json")
    assert predicted.exit_code == 0, predicted.output
    for row in (json.loads(line) for line in predicted.output.splitlines() if line.startswith("{")):
        values = list(row["probabilities"].values())
        assert min(values) >= 0 and math.isclose(sum(values), 1.0, abs_tol=1e-5)  # float32 softmax


def test_a_head_that_is_neither_softmax_nor_linear_is_refused(tmp_path, photos):
    out = tmp_path / "run"
    _refused(invoke("train", TINY_SPEC, "--set", "head.1.activation=relu", "--data", photos, "--out", out), "'relu'")
    assert not out.exists()


# -- item 9: training memory ------------------------------------------------------------------------

def test_the_training_estimate_follows_the_documented_formula():
    """size_guard's formula, checked against the Keras model's own counts (an independent source)."""
    from archbuilder.keras.graph import build_model
    from archbuilder.plan.size_guard import estimate, optimizer_slots
    from archbuilder.plan.validate import load_checked_spec

    checked = load_checked_spec(TINY_SPEC)
    model = build_model(checked.spec)
    params = model.count_params()
    values = sum(math.prod(layer.output.shape[1:]) for layer in model.layers)  # the input layer included
    for optimizer, slots in (("adam", 2), ("rmsprop", 1), ("sgd", 0)):
        assert optimizer_slots(optimizer) == slots
        got = estimate(checked.plan, batch_size=16, training=True, slots=slots)
        assert (got.weight_bytes, got.activation_bytes) == (4 * params * (2 + slots), 4 * values * 16 * 2)
    assert estimate(checked.plan).total == 4 * params + 4 * values


def test_train_refuses_a_batch_that_does_not_fit_with_the_flag_it_has(tmp_path, photos):
    out = tmp_path / "run"
    # The tiny net needs ~60 KiB for one image (validate passes) but ~2 MiB to train a batch of 16.
    assert invoke("validate", TINY_SPEC, "--max-memory", "1MiB").exit_code == 0
    line = _refused(invoke("train", TINY_SPEC, "--data", photos, "--out", out, "--max-memory", "1MiB"),
                    "training with batch 16", "--max-memory")
    assert not out.exists(), line
    _refused(invoke("train", TINY_SPEC, "--data", photos, "--out", out, "--max-memory", "0"), "not positive")


# -- item 8: one writer per run folder ----------------------------------------------------------------

_HOLD = (
    "import sys, time\n"
    "from archbuilder.training.run_lock import RunLock\n"
    "RunLock(sys.argv[1]).acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)


def test_a_second_writer_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path):
    from archbuilder.training.run_lock import RunFolderBusy, RunLock

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy) as caught:
            RunLock(tmp_path).acquire()
        assert f"pid {holder.pid}" in str(caught.value) and len(str(caught.value).splitlines()) == 1
        # in the API's words (it said "then --resume" to Python callers too)
        assert str(caught.value).endswith(f"then continue with: archbuilder.train(resume='{tmp_path}')")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / ".lock").exists()  # kill -9 leaves the file behind: stale, and taken over
    lock = RunLock(tmp_path)
    lock.acquire()
    assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()} ")
    lock.release()
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_train_resume_while_the_run_is_training_is_refused(tmp_path, photos):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "train", str(TINY_SPEC), "--data", str(photos), "--out", str(out),
         "--epochs", "500", "--quiet"], cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "state.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        second = cli("train", "--resume", out)
        assert second.returncode == 2, second.stderr
        assert f"another train process (pid {first.pid} " in second.stderr
        assert f"then continue with: python cli.py train --resume {out}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    assert first.returncode == 130
    assert json.loads((out / "state.json").read_text())["epochs_done"] >= 1  # its run folder is intact


def test_the_resize_note_says_when_the_spec_sets_no_classes(tmp_path, ten_classes):
    """Item 15: it said "the spec's head has None classes"."""
    result = invoke("train", TINY_SPEC, "--set", "classes=null", "--set", "head.1.units=3", "--data", ten_classes,
                    "--out", tmp_path / "run")
    assert "note: the spec sets no classes; the data has 10" in result.output, result.output
    assert "None" not in result.output
    _refused(result, "outputs 3 values")


def test_a_lock_that_is_a_link_a_folder_or_unwritable_is_refused_and_nothing_written_through_it(tmp_path):
    # A `.lock` linked to another file had that file truncated and overwritten with our pid (a
    # symlink in a shared run folder could point at any file train's user may write); a `.lock`
    # folder or a run folder that cannot be written were tracebacks.
    from archbuilder.errors import UserError
    from archbuilder.training.run_lock import RunLock

    victim = tmp_path / "victim.txt"
    victim.write_text("someone's data")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".lock").symlink_to(victim)
    (tmp_path / "folder" / ".lock").mkdir(parents=True)
    cases = {linked: "it is a link, which train does not write through",
             tmp_path / "folder": "it is a folder",
             Path("/proc/archbuilder-run"): "the run folder cannot be written"}
    for root, why in cases.items():
        with pytest.raises(UserError) as caught:
            RunLock(root).acquire()
        assert str(caught.value).startswith(f"{root / '.lock'}: cannot take the run folder's lock: {why}"), str(caught.value)
    assert victim.read_text() == "someone's data" and (linked / ".lock").is_symlink()
