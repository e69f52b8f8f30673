"""Atomic writes leave the old file or the new one, and the new one has ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from archbuilder.atomic import atomic_path, atomic_write_text


def test_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "best.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]


def test_new_files_get_the_umask_permissions_not_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "history.csv", "epoch\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "history.csv").stat().st_mode) == 0o644


def test_a_sigterm_between_a_folder_s_two_renames_waits_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    # SIGTERM now ends every command with SystemExit (cli/__init__.py): arriving after the old
    # folder was moved aside and before the new one took its place, it left neither at the name.
    # The signal is sent by the first rename itself, the moment that matters; it is held until both ran.
    import os
    import signal

    from archbuilder import atomic

    destination = tmp_path / "export"
    destination.mkdir()
    (destination / "saved_model.pb").write_text("old")
    real_replace = os.replace

    def replace_then_signal(source, target):
        real_replace(source, target)
        if target != destination:  # the old folder moved aside: the window
            os.kill(os.getpid(), signal.SIGTERM)

    def terminated(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    monkeypatch.setattr(atomic.os, "replace", replace_then_signal)
    try:
        with pytest.raises(SystemExit):
            with atomic.atomic_dir(destination) as tmp:
                (tmp / "saved_model.pb").write_text("new")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (destination / "saved_model.pb").read_text() == "new"
