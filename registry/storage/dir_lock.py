"""One process per data directory: an exclusive ``flock`` on ``data_dir/zkid.lock``.

Two registries on one directory of SQLite stores would run two batchers with one
operator key (two transactions per nonce, members sent twice) and two evidence logs
appending to one file; two relays would hand out and erase each other's blobs. SQLite's
own locks keep each file consistent but cannot stop that. The lock is advisory and held
by the open file: the kernel drops it when its holder exits, also on SIGKILL, so a
crash never leaves a stale lock to clear by hand. The file holds the holder's pid, for
the error message only (no request data: docs/privacy.md).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from registry.errors import RegistryError

FILE_NAME = "zkid.lock"


class DataDirLock:
    """Holds ``data_dir/zkid.lock`` until :meth:`release` (or the process ends).

    Raises :class:`RegistryError` ``data_dir_in_use`` when another open file holds it
    (another process, or this one through another :class:`DataDirLock`)."""

    def __init__(self, data_dir: Path, what: str) -> None:
        self.path = Path(data_dir) / FILE_NAME
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            by = f"process {holder}" if holder else "another process"
            raise RegistryError(
                "data_dir_in_use",
                f"{data_dir} is in use by {by} (one {what} per data directory; stop it or choose another --data-dir)",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: removing it would let a process
        that opened it just before lock a file no longer in the directory."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor of the open file drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
