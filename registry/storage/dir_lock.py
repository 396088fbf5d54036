"""One process per data directory: an exclusive ``flock`` on the directory itself.

Two registries on one directory of SQLite stores would run two batchers with one
operator key (two transactions per nonce, members sent twice) and two evidence logs
appending to one file; two relays would hand out and erase each other's blobs. SQLite's
own locks keep each file consistent but cannot stop that.

The lock is taken on the directory, not on a file in it: a lock file can be deleted or
replaced (an operator "clearing a stale lock", a restore by rsync) while its holder runs,
and the next process would lock the new file beside the old holder; the directory stays
the same inode while the holder's stores are in it. The lock is advisory and held by the
open descriptor: the kernel drops it when its holder exits, also on SIGKILL, so a crash
never leaves a stale lock. ``zkid.lock`` beside the stores holds the holder's pid, only to
name it in the error message (no request data: docs/privacy.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from registry.errors import RegistryError

FILE_NAME = "zkid.lock"


class DataDirLock:
    """Holds the lock on ``data_dir`` (created if missing) until :meth:`release` or the
    process ends.

    Raises :class:`RegistryError` ``data_dir_in_use`` when another open descriptor holds it
    (another process, or this one through another :class:`DataDirLock`)."""

    def __init__(self, data_dir: Path, what: str) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # keys inside; nobody else may lock it
        fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_pid(self.data_dir / FILE_NAME)
            by = f"process {holder}" if holder else "another process"
            raise RegistryError(
                "data_dir_in_use",
                f"{data_dir} is in use by {by} (one zkid service per data directory: stop it, or give this"
                f" {what} another --data-dir)",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        _write_pid(self.data_dir / FILE_NAME)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # the last descriptor of the open directory: the flock goes with it

    @property
    def held(self) -> bool:
        return self._fd is not None


def _open_regular(path: Path, flags: int) -> int | None:
    """A descriptor of ``path`` if it is (or is created as) a regular file; never through a
    symlink, never blocking on a FIFO; else None."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _write_pid(path: Path) -> None:
    """Best effort: the lock is the directory's; a ``zkid.lock`` that is not a regular file
    (a directory, a FIFO, a symlink) is left alone and only the error message loses the pid."""
    fd = _open_regular(path, os.O_RDWR | os.O_CREAT)
    if fd is None:
        return
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    fd = _open_regular(path, os.O_RDONLY)
    if fd is None:
        return None
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None
