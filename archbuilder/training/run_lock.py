"""One writer per run folder: an exclusive lock held while `train` writes it.

Two processes training into one folder (`train --resume R` while `train --out R` still runs)
would overwrite each other's checkpoints, and `--resume` deletes what it takes for a killed
process's temporaries. The lock is `RUN/.lock`, locked with `flock` and holding the owner's pid and
host for the refusal message. The kernel drops a `flock` when its process dies, however it dies,
so a lock file left behind by `kill -9` is stale by construction and the next writer simply takes
it: no pid guessing. (In a distributed run only the chief worker, which writes the folder, locks it.)

    lock = RunLock(run_root)
    lock.acquire()          # RunFolderBusy (exit 2) if another process holds it
    try: ...
    finally: lock.release()
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

from archbuilder.errors import Remedy, UserError, shown

LOCK_NAME = ".lock"


class RunFolderBusy(UserError):
    """Another process is writing the run folder."""


class RunLock:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise RunFolderBusy naming the holder; never waits."""
        if self._fd is not None:
            return
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise RunFolderBusy(
                    f"{shown(self.root)}: another train process ({owner}) is writing this run folder; "
                    "wait for it to finish or stop it (Ctrl-C), then continue with: ",
                    Remedy("{call}", (("resume", str(self.root)),), call="train"),
                ) from None
            # The holder we waited for may have released and removed the file, and a third process
            # created a new one: ours must still be the file at this name.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def _open(self) -> int:
        """The lock file, opened (made if missing); never through a link, never anything but a
        regular file: a `.lock` linked to another file had that file overwritten with our pid."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as error:
            why = {errno.ELOOP: "it is a link, which train does not write through",
                   errno.EISDIR: "it is a folder"}.get(error.errno, f"the run folder cannot be written ({error.strerror})")
            raise UserError(f"{shown(self.path)}: cannot take the run folder's lock: {why}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"{shown(self.path)}: cannot take the run folder's lock: it is not a regular file")
        return fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (exiting drops it too, however the process ends)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"
