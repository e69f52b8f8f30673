"""archbuilder/xla_cache.py: TensorFlow's persistent XLA cache shared between runs through a folder of
each process's own, published atomically at exit, and off where it could fail a run (an unwritable
or nearly full cache folder).

The cases through `_compile` run real TensorFlow in a subprocess (TensorFlow reads TF_XLA_FLAGS
once, when it sets up its devices), compiling one small function as the fused kernels are
compiled; the others call the folder bookkeeping directly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_support import REPO

from archbuilder import xla_cache

_COMPILE = """
import os, sys
sys.path.insert(0, {repo!r})
from archbuilder.runtime import import_tensorflow_quietly
tf = import_tensorflow_quietly()
print("flags", os.environ.get("TF_XLA_FLAGS"))
f = tf.function(lambda x: tf.sin(x) * 2.0 + 1.0, jit_compile=True)
print("value", float(f(tf.ones([4]))[0]))
"""


def _compile(cache: Path, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    environment.update(ARCHBUILDER_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="0",
                       TF_CPP_VMODULE="device_executable_persistor=1", **env)
    result = subprocess.run([sys.executable, "-c", _COMPILE.format(repo=str(REPO))], capture_output=True,
                            text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "value 2.68" in result.stdout  # 2 sin(1) + 1
    return result


def _shared(cache: Path) -> Path:
    (folder,) = cache.glob("xla-*")
    return folder


def test_a_second_run_loads_what_the_first_compiled_and_no_run_folder_stays(tmp_path):
    first = _compile(tmp_path)
    shared = _shared(tmp_path)
    entries = sorted(p.name for p in shared.glob("*.pb"))
    assert len(entries) == 1
    assert [p for p in shared.iterdir() if p.name not in entries] == []  # its own folder removed, no partial file
    assert "Loading cached entry" not in first.stderr
    second = _compile(tmp_path)
    assert "Loading cached entry" in second.stderr  # TensorFlow's own log line (VLOG 1)
    assert sorted(p.name for p in shared.glob("*.pb")) == entries


def test_an_unwritable_cache_folder_leaves_xla_as_before(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _compile(blocker)
    assert "flags None" in result.stdout
    assert blocker.read_text() == "not a folder"


def test_the_users_own_cache_flag_and_the_switch_are_left_alone(tmp_path):
    theirs = tmp_path / "theirs"
    result = _compile(tmp_path / "ours", TF_XLA_FLAGS=f"--tf_xla_persistent_cache_directory={theirs}")
    assert f"flags --tf_xla_persistent_cache_directory={theirs}\n" in result.stdout
    assert len(list(theirs.glob("*.pb"))) == 1 and not (tmp_path / "ours").exists()
    result = _compile(tmp_path / "off", ARCHBUILDER_XLA_CACHE="0")
    assert "flags None" in result.stdout and not (tmp_path / "off").exists()


def test_a_parents_folder_in_the_environment_is_replaced_by_the_childs_own(tmp_path):
    shared = tmp_path / "parent" / "xla-0000"
    parents = shared / f"run-{xla_cache._host()}-{os.getppid()}-abc"  # a live process's folder
    parents.mkdir(parents=True)
    inherited = f"--tf_xla_persistent_cache_directory={parents} --tf_xla_auto_jit=0"
    result = _compile(tmp_path / "child", TF_XLA_FLAGS=inherited)
    assert str(parents) not in result.stdout and "--tf_xla_auto_jit=0" in result.stdout  # the rest kept
    assert list(parents.iterdir()) == []  # the child wrote nothing there
    assert len(list(_shared(tmp_path / "child").glob("*.pb"))) == 1  # but published into its own machine's folder


@pytest.mark.skipif(not hasattr(os, "fork"), reason="process ids of this host")
def test_folders_of_dead_runs_on_this_host_are_removed_and_others_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = xla_cache._host()
    left = {f"run-{host}-{dead}-x1": "dead run", f"run-{host}-{os.getpid()}-x2": "live run",
            f"run-other_host-{dead}-x3": "another host's", f".entry.pb.{dead}.partial": "dead partial",
            "xla_compile_cache__1__2__XLA_CPU_JIT.pb": "an entry", "notes.txt": "not ours"}
    for name in left:
        path = tmp_path / name
        if name.startswith("run-"):
            path.mkdir()
        else:
            path.write_text(left[name])
    xla_cache._remove_dead_runs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        name for name in left if left[name] not in ("dead run", "dead partial"))


def test_publish_adds_only_new_entries_and_only_in_the_owner(tmp_path):
    shared, own = tmp_path / "xla-1", tmp_path / "xla-1" / "run-h-1-x"
    own.mkdir(parents=True)
    (shared / "old.pb").write_text("published before")
    (own / "old.pb").write_text("a link to it")
    (own / "new.pb").write_text("compiled by this run")
    xla_cache.publish(own, shared, owner_pid=os.getpid() + 1)  # a forked child's exit: nothing
    assert own.exists() and not (shared / "new.pb").exists()
    xla_cache.publish(own, shared, owner_pid=os.getpid())
    assert not own.exists()
    assert (shared / "new.pb").read_text() == "compiled by this run"
    assert (shared / "old.pb").read_text() == "published before"
    assert sorted(p.name for p in shared.iterdir()) == ["new.pb", "old.pb"]


def test_a_nearly_full_disk_leaves_xla_as_before(tmp_path, monkeypatch):
    # A full disk cannot be made here; shutil.disk_usage reporting one is what the check reads.
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path))
    real = xla_cache.shutil.disk_usage
    monkeypatch.setattr(xla_cache.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=xla_cache.MIN_FREE_BYTES - 1))
    assert xla_cache.use_persistent_xla_cache({"cpu": "test"}) is None
    assert "TF_XLA_FLAGS" not in os.environ
    (shared,) = tmp_path.glob("xla-*")
    assert list(shared.iterdir()) == []  # no run folder made
