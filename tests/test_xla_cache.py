"""archbuilder/xla_cache.py: TensorFlow's persistent XLA cache shared between runs through a folder of
each process's own, published atomically at exit, and off where it could fail a run (an unwritable
or nearly full cache folder).

The cases through `_compile` run real TensorFlow in a subprocess (TensorFlow reads TF_XLA_FLAGS
once, when it sets up its devices), compiling one small function as the fused kernels are
compiled, as a command's process (`cli.run`) unless a case says otherwise; the others call the
folder bookkeeping directly."""

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
if {command!r}:  # as cli.run: this process's descriptor 2 is ours
    from archbuilder.native_lines import enable
    enable()
from archbuilder.runtime import import_tensorflow_quietly
tf = import_tensorflow_quietly()
print("flags", os.environ.get("TF_XLA_FLAGS"))
f = tf.function(lambda x: tf.sin(x) * 2.0 + 1.0, jit_compile=True)
print("value", float(f(tf.ones([4]))[0]))
"""


def _compile(cache: Path, command: bool = True, **env) -> subprocess.CompletedProcess:
    """A process that compiles one XLA function: a command's (`cli.run`'s) unless `command` is False."""
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", "ARCHBUILDER_XLA_CACHE",
                                                                   "ARCHBUILDER_TF_LOGS")}
    environment.update(ARCHBUILDER_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="0",
                       TF_CPP_VMODULE="device_executable_persistor=1", **env)
    result = subprocess.run([sys.executable, "-c", _COMPILE.format(repo=str(REPO), command=command)],
                            capture_output=True, text=True, timeout=300, env=environment)
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


def test_tensorflow_s_false_alarms_on_loading_an_entry_stay_off_a_command_s_terminal(tmp_path):
    """TensorFlow 2.21 logs "Error parsing text-format tensorflow.XlaSerializedCacheEntry" at ERROR
    level for every entry it loads (and on some CPUs two "could lead to ... SIGILL" lines for
    tuning features): a command's descriptor 2 is filtered of them (native_lines.py), and with
    ARCHBUILDER_TF_LOGS=1 they show, which is also what shows this TensorFlow still prints them."""
    from archbuilder.native_lines import XLA_CACHE_LINE

    def alarms(result):
        return [line for line in result.stderr.splitlines() if XLA_CACHE_LINE.match(line.encode())]

    _compile(tmp_path)
    shown = _compile(tmp_path, ARCHBUILDER_TF_LOGS="1")
    assert "Loading cached entry" in shown.stderr
    assert any("Error parsing text-format tensorflow.XlaSerializedCacheEntry" in line for line in alarms(shown))
    filtered = _compile(tmp_path)
    assert "Loading cached entry" in filtered.stderr  # loaded, and TensorFlow's other lines still pass
    assert alarms(filtered) == [] and "SIGILL" not in filtered.stderr


def test_outside_a_command_the_cache_is_on_only_when_asked_for(tmp_path):
    """A notebook's or a script's descriptor 2 is not ours to filter, so the false alarms above
    would show there: the cache stays off unless ARCHBUILDER_XLA_CACHE=1, and a parent command's
    folder inherited in TF_XLA_FLAGS is not written into."""
    shared = tmp_path / "parent" / "xla-0000"
    parents = shared / f"run-{xla_cache._host()}-{os.getppid()}-abc"  # a live process's folder
    parents.mkdir(parents=True)
    inherited = f"--tf_xla_persistent_cache_directory={parents} --tf_xla_auto_jit=0"
    result = _compile(tmp_path / "script", command=False, TF_XLA_FLAGS=inherited)
    assert "flags --tf_xla_auto_jit=0\n" in result.stdout
    assert list(parents.iterdir()) == [] and not (tmp_path / "script").exists()
    result = _compile(tmp_path / "asked", command=False, ARCHBUILDER_XLA_CACHE="1")
    assert "--tf_xla_persistent_cache_directory=" in result.stdout
    assert len(list(_shared(tmp_path / "asked").glob("*.pb"))) == 1


def test_the_native_line_filter_drops_the_xla_cache_s_false_alarms_only():
    """The lines as TensorFlow 2.21 printed them on the Zen 4 here (features shortened); a real
    instruction set missing on the host, or another proto's parse error, still shows."""
    import io

    from archbuilder.native_lines import copy_lines

    quiet = [b"E0000 00:00:1796614408.620642   25993 text_format.cc:378] Error parsing text-format "
             b"tensorflow.XlaSerializedCacheEntry: 2:1: Expected identifier, got: 4\n",
             b"E0000 00:00:1796614408.660479   25993 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target "
             b"machine feature +prefer-no-scatter is not  supported on the host machine. Machine type used for "
             b"XLA:CPU compilation doesn't match the machine type for execution. Compile machine features: "
             b"[+64bit,+prefer-no-gather] vs host machine features: [64bit]. This could lead to execution errors "
             b"such as SIGILL.\n",
             b"E1207 03:33:28.660533 25993 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target machine "
             b"feature +prefer-no-gather is not  supported on the host machine. (...)\n"]
    shown = [b"E0000 00:00:1796614408.660479   25993 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target "
             b"machine feature +avx512f is not  supported on the host machine. (...) such as SIGILL.\n",
             b"E0000 00:00:1796614408.620642   25993 text_format.cc:378] Error parsing text-format "
             b"tensorflow.GraphDef: 2:1: Expected identifier, got: 4\n",
             b"F0000 00:00:1796614408.620642   25993 device_compiler.h:200] Check failed: entry\n"]
    out = io.BytesIO()
    copy_lines(io.BytesIO(b"".join([quiet[0], shown[0], quiet[1], shown[1], quiet[2], shown[2]])), out)
    assert out.getvalue() == b"".join(shown)


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
    monkeypatch.setenv("ARCHBUILDER_XLA_CACHE", "1")  # on in this (pytest's) process too: the disk decides
    real = xla_cache.shutil.disk_usage
    monkeypatch.setattr(xla_cache.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=xla_cache.MIN_FREE_BYTES - 1))
    assert xla_cache.use_persistent_xla_cache({"cpu": "test"}) is None
    assert "TF_XLA_FLAGS" not in os.environ
    (shared,) = tmp_path.glob("xla-*")
    assert list(shared.iterdir()) == []  # no run folder made
