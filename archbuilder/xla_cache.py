"""TensorFlow's persistent XLA cache, shared between runs without a failed or torn write failing one.

The fused kernels (swish, GELU, layer norm) and Winograd's transforms are XLA-compiled functions,
compiled afresh in each run's first step: ResNet-101's took 1.8 s of its first call's threads on
the Zen 4, and with TensorFlow's persistent cache (`--tf_xla_persistent_cache_directory`) filled by
an earlier run, EfficientNet-B1's first step in `train` came ~1 s sooner (bench/RESULTS.md,
seventeenth session). Used as it is, that cache can fail a run: TensorFlow 2.21 fails the compilation, and so the
training step, when it cannot write an entry, and it writes entries in place, so a run killed
while writing one, or two runs writing the same one, leave a torn file that fails every later
run's compile.

So each run gets a folder of its own inside the shared one (`xla-<machine key hash>` in the
user's cache folder: an executable compiled here uses this CPU's instructions), holding links to
the shared entries; TensorFlow reads and writes only there. When the process ends, the entries
it wrote, complete by then, are copied into the shared folder under a temporary name and renamed
into place (a rename is atomic), and its folder is removed. A folder left by a killed run on this
host is removed by the next run. Where the cache folder cannot be written, or the user set
TF_XLA_FLAGS' cache themselves, or ARCHBUILDER_XLA_CACHE=0, nothing is set and XLA compiles as
before. TensorFlow 2.21 logs three false alarms at ERROR level for each entry it loads (a failed
text-format parse before the binary one, and on some CPUs "could lead to execution errors such
as SIGILL" for two tuning features; native_lines.py): so the cache is on in a command's process
(`cli.py`), whose descriptor 2 is filtered of them, and in other processes (a notebook, a script
using the API) only with ARCHBUILDER_XLA_CACHE=1. A child process inherits the variable; one that
imports TensorFlow through archbuilder takes a folder of its own. With under MIN_FREE_BYTES free
on the cache folder's disk the cache stays off (a disk that fills up while TensorFlow writes an
entry would fail that step). An entry damaged on disk after it was published (a disk fault) fails
the compile, as TensorFlow's own cache would ("Read less bytes than requested"): delete the folder.

TensorFlow reads TF_XLA_FLAGS when it first sets up its devices, so this runs before TensorFlow is
imported (runtime.import_tensorflow_quietly); once set, a process keeps its folder. The machine
key names the CPU and TensorFlow's version (an XLA executable holds this CPU's instructions);
TensorFlow's own key of an entry holds the function's fingerprint and the device type.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import shutil
import socket
import tempfile
from pathlib import Path

from archbuilder import native_lines
from archbuilder.cache_folder import cache_dir, key_digest
from archbuilder.cpu_info import cpu_key, cpuinfo

FLAG = "--tf_xla_persistent_cache_directory"
SWITCH = "ARCHBUILDER_XLA_CACHE"  # "0": leave XLA's cache off; "1": on outside a command too
ENTRIES = "*.pb"  # what TensorFlow writes: xla_compile_cache__<fingerprints>__XLA_CPU_JIT.pb
_RUN_PREFIX = "run-"  # run-<host>-<pid>-<random>: one process's folder
# Free space the cache folder's disk must have for the cache to be used: TensorFlow fails the step
# whose entry it cannot write (a run writes at most a few MB: 74 entries of two networks, 1.3 MB).
MIN_FREE_BYTES = 2**30


def machine_key() -> dict:
    """What an XLA executable compiled here depends on, known before TensorFlow is imported."""
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {**cpu_key(*cpuinfo()), "tensorflow": version, "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def use_persistent_xla_cache(key: dict | None = None) -> Path | None:
    """Point TensorFlow's persistent XLA cache at a folder of this process's own, inside the shared
    folder of machine `key` (default: machine_key()), filled with links to the shared entries;
    publish what it adds when the process ends. The folder, or None where the cache stays off."""
    tokens = os.environ.get("TF_XLA_FLAGS", "").split()
    given = [token for token in tokens if token.startswith(f"{FLAG}=")]
    if given:
        folder = Path(given[-1].split("=", 1)[1])
        if not (folder.parent.name.startswith("xla-") and folder.name.startswith(_RUN_PREFIX)):
            return None  # the user's own cache folder: theirs to manage
        if folder.name.startswith(f"{_RUN_PREFIX}{_host()}-{os.getpid()}-"):
            return folder  # this process's, set by an earlier call
        # A parent process's folder, inherited with the environment: this process takes its own, or none.
    flags = " ".join(token for token in tokens if not token.startswith(f"{FLAG}="))
    switch = os.environ.get(SWITCH)
    # On in a command's process, where TensorFlow's false alarms on each entry it loads are kept off
    # the terminal (native_lines.py); elsewhere (a notebook, a script) only when asked for.
    if switch == "0" or (switch != "1" and not native_lines.in_command()):
        if given:
            os.environ["TF_XLA_FLAGS"] = flags
        return None
    shared = cache_dir() / f"xla-{key_digest(key or machine_key())}"
    try:
        shared.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(shared).free < MIN_FREE_BYTES:
            raise OSError("too little free space for XLA's cache")
        _remove_dead_runs(shared)
        own = Path(tempfile.mkdtemp(prefix=f"{_RUN_PREFIX}{_host()}-{os.getpid()}-", dir=shared))
        for entry in shared.glob(ENTRIES):
            _link_or_copy(entry, own / entry.name)
    except OSError:
        if given:  # not the parent's folder either: XLA compiles as before
            os.environ["TF_XLA_FLAGS"] = flags
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={own}".strip()
    atexit.register(publish, own, shared, os.getpid())
    native_lines.filter_native_stderr()  # before TensorFlow loads an entry
    return own


def publish(own: Path, shared: Path, owner_pid: int) -> None:
    """Copy the entries `own` has and `shared` lacks into `shared` (each under a temporary name,
    then renamed into place), then remove `own`. Only in the process that made `own` (a forked
    child inherits the exit hook). Never raises: the cache is an optimization."""
    if os.getpid() != owner_pid:
        return
    try:
        for entry in own.glob(ENTRIES):
            target = shared / entry.name
            if target.exists():
                continue
            partial = shared / f".{entry.name}.{os.getpid()}.partial"
            shutil.copyfile(entry, partial)
            os.replace(partial, target)
    except OSError:
        pass
    shutil.rmtree(own, ignore_errors=True)


def _remove_dead_runs(shared: Path) -> None:
    """Remove the run folders (and partial copies) that processes of this host left when killed."""
    host = _host()
    for path in shared.iterdir():
        name = path.name
        if name.startswith(f"{_RUN_PREFIX}{host}-"):
            pid = name[len(f"{_RUN_PREFIX}{host}-"):].split("-", 1)[0]
        elif name.startswith(".") and name.endswith(".partial"):
            pid = name.rsplit(".", 2)[-2]
        else:
            continue
        if pid.isdigit() and not _alive(int(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _host() -> str:
    """This host's name in folder names: letters, digits and underscores only."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system has them (TensorFlow only reads existing entries), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
