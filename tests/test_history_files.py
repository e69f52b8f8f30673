"""history.csv after every epoch; curves.png at most every CURVES_EVERY_SECONDS and when training ends."""

from __future__ import annotations

import csv
import json

import pytest

from archbuilder.training.callbacks import history_files
from archbuilder.training.callbacks.history_files import HistoryFiles
from archbuilder.training.callbacks.session import Session
from archbuilder.training.run_dir import RunDir
from archbuilder.training.run_state import RunState


def _callback(tmp_path) -> tuple[HistoryFiles, Session]:
    session = Session(run=RunDir(tmp_path / "run"), state=RunState(), data=None, metadata={"spec_name": "tiny"},
                      batch_size=16, monitor="loss", predict=None)
    session.run.root.mkdir()
    return HistoryFiles(session), session


def _finish_epoch(callback: HistoryFiles, session: Session, epoch: int) -> None:
    session.row = {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.3 * epoch}
    session.state.history.append(session.row)
    session.state.epochs_done = epoch
    callback.on_epoch_end(epoch - 1)


def _epochs_in_history(session: Session) -> list[int]:
    with open(session.run.history) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_short_epochs_write_the_history_each_time_and_the_curves_when_training_ends(tmp_path):
    callback, session = _callback(tmp_path)
    callback.on_train_begin()
    for epoch in (1, 2, 3):  # each far shorter than the interval
        _finish_epoch(callback, session, epoch)
        assert _epochs_in_history(session) == list(range(1, epoch + 1))
        assert not session.run.curves.exists()
    callback.on_train_end()
    assert session.run.curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = session.run.curves.stat().st_mtime_ns
    callback.on_train_end()  # nothing new since: not drawn again
    assert session.run.curves.stat().st_mtime_ns == drawn


def test_epochs_longer_than_the_interval_are_drawn_each(tmp_path, monkeypatch):
    monkeypatch.setattr(history_files, "CURVES_EVERY_SECONDS", 0.0)
    callback, session = _callback(tmp_path)
    callback.on_train_begin()
    _finish_epoch(callback, session, 1)
    assert session.run.curves.exists() and not callback.undrawn


def test_workers_that_do_not_write_draw_nothing(tmp_path):
    callback, session = _callback(tmp_path)
    session.writer = False  # a distributed run's workers other than the chief
    callback.on_train_begin()
    _finish_epoch(callback, session, 1)
    callback.on_train_end()
    assert list(session.run.root.iterdir()) == []


@pytest.mark.parametrize("text, reason", [("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                                          ('{"epochs": ' + "9" * 5000 + "}", "a number of more than 4,300 digits")])
def test_a_run_json_python_cannot_read_is_named(tmp_path, text, reason):
    # A hand-edited run.json: --resume ended in a RecursionError or ValueError traceback.
    from archbuilder.errors import UserError

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.run_json.write_text(text)
    with pytest.raises(UserError) as caught:
        run.read_run_info()
    assert str(caught.value) == f"{run.run_json}: unreadable ({reason})"


def test_a_run_json_without_its_optional_keys_resumes_with_their_defaults(tmp_path):
    # `test`, `holdout_photographers`, `classes_filter` left out: validated, then a KeyError.
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.run_json.write_text(json.dumps({"data": "images", "training": {}, "input_shape": [8, 8, 3], "spec_name": "tiny"}))
    info = run.read_run_info()
    assert (info["test"], info["holdout_photographers"], info["classes_filter"]) == (None, None, None)
    assert info["data"] == "images" and info["training"] == {}  # what the file holds, as it holds it


_ROW = {"epoch": 1, "seconds": 2.5, "loss": 1.0}
_BEST = {"epoch": 1, "monitor": "loss", "value": 1.0}


@pytest.mark.parametrize("state, message", [
    ({"checkpoint": None}, "epochs_done is 1 but no checkpoint is named"),  # a TypeError (a path joined to None)
    ({"best": {}}, "best.epoch: field required"),  # a KeyError after the next epoch trained
    ({"best": {**_BEST, "value": "low"}}, "best.value: "),  # a TypeError comparing it
    ({"best": {**_BEST, "epoch": 5}}, "the best epoch is 5 but epochs_done is 1"),
    ({"history": [{"epoch": 1, "loss": 1.0}]}, "history.0.seconds: field required"),  # a KeyError after every epoch
], ids=["no-checkpoint", "best-empty", "best-value-text", "best-beyond", "row-without-seconds"])
def test_a_state_json_that_train_did_not_write_is_refused(tmp_path, state, message):
    from archbuilder.errors import UserError

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.state.write_text(json.dumps({"epochs_done": 1, "checkpoint": "epoch-0001.keras", "best": _BEST,
                                     "history": [_ROW], **state}))
    with pytest.raises(UserError) as caught:
        run.read_state()
    assert message in str(caught.value), str(caught.value)
