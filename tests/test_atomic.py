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
