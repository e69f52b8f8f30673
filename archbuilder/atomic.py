"""Write files so that a reader, or a process killed mid-write, sees the old file or the new one.

Everything is written to a temporary file in the destination's folder (same filesystem, so the
final `os.replace` is atomic), flushed and fsync'ed, then renamed over the destination. A crash
leaves at most a stray temporary file, never a half-written destination.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `destination`; on success it replaces `destination`.

    `suffix` defaults to the destination's own suffix, because some writers (Keras's
    `model.save`) check the file name's extension.

        with atomic_path("run/best.keras") as tmp:
            model.save(tmp)
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp" + (suffix if suffix is not None else destination.suffix),
        dir=destination.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); the destination gets what a plain open() would give.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, destination)
        _fsync_dir(destination.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(destination: str | os.PathLike, text: str) -> None:
    with atomic_path(destination) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(destination: str | os.PathLike, data: bytes) -> None:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)


def atomic_write_with(destination: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` and move the result into place."""
    with atomic_path(destination) as tmp:
        writer(tmp)


@contextlib.contextmanager
def atomic_dir(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `destination`; on success it takes its place.

    A folder cannot be renamed over a non-empty one, so an existing `destination` is first
    renamed aside and removed after the swap: a reader sees the old folder, then the new one
    (with a moment between the two renames where neither is there, never a half-written one).

        with atomic_dir("export/saved_model") as tmp:
            model.export(tmp, format="tf_saved_model")
    """
    import shutil

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes it private; a plain mkdir would not
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                _fsync_file(path)
        old = None
        with _signals_held():  # a SIGTERM between the renames would leave neither folder in place
            if destination.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".old", dir=destination.parent))
                os.replace(destination, old / destination.name)
            os.replace(tmp, destination)
        _fsync_dir(destination.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM received while the block runs are noted, then raised again once it is
    done, for their own handlers. (Blocking them with pthread_sigmask would not do: Python runs its
    handlers on the main thread whichever of the process's threads the kernel delivers a signal to.)
    Only the main thread sets handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous = {signum: handler for signum, handler in previous.items() if handler is not None}  # None: set in C
    for signum in previous:
        signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
