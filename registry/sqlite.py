"""How every store in ``registry`` opens SQLite: WAL mode, and fsync per commit where a
client was told "accepted" (outbox, nullifiers, evidence, blobs) but not where the data
can be rebuilt (the chain index) or is only a log (connection times).

Also how they close and how a service checks them at start (docs/operations.md):

- :func:`close_connection` folds the WAL into the main file (``wal_checkpoint(TRUNCATE)``)
  before closing, so after a clean stop the main file alone holds every commit;
- :class:`StoreManifest` (``<data_dir>/stores.json``) lists the durable stores created in a
  data directory; :meth:`StoreManifest.check` refuses one that should exist but is missing,
  empty, not SQLite, fails ``PRAGMA quick_check`` or lacks its tables (:class:`StoreError`)
  instead of letting SQLite create an empty one: an empty nullifier store would authorize
  spent proofs again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger("registry.sqlite")

#: The data directory's list of durable stores (see :class:`StoreManifest`).
MANIFEST_FILE = "stores.json"
#: The fix for a lost or damaged durable store.
RESTORE_FIX = "restore it from a backup (docs/operations.md) before starting"
_MAGIC = b"SQLite format 3\x00"


def connect(path: Path | str, *, durable: bool, timeout: float = 30.0) -> sqlite3.Connection:
    """An autocommit connection usable from any thread (callers serialise their own use).

    ``durable``: ``synchronous=FULL``, so a committed write survives a power cut before
    it is acknowledged; otherwise ``NORMAL`` (safe against corruption, may lose the last
    commits on power loss).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return conn


class ConnectionPerThread:
    """One connection per thread (SQLite connections must not be used concurrently),
    all of them closed together by :meth:`close`."""

    def __init__(self, path: Path | str, *, durable: bool, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._durable = durable
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, durable=self._durable, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection; the last one checkpoints the WAL into the main file
        first (the others are closed before, so no reader holds the WAL)."""
        with self._lock:
            last = self._all.pop() if self._all else None
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
            if last is not None:
                close_connection(last)
        self._local = threading.local()


def close_connection(conn: sqlite3.Connection) -> None:
    """Checkpoint the WAL into the main file, truncate it, then close.

    After this (and once no other connection has the file open, when SQLite also deletes
    the ``-wal`` and ``-shm`` files) the main file alone holds every commit: a copy of it is
    a complete backup. A checkpoint blocked by another reader is logged, not raised: the
    commits are still safe in the WAL.
    """
    try:
        row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if row is not None and row[0]:
            log.warning("WAL checkpoint incomplete at close (another connection is reading)")
    except sqlite3.Error as exc:
        log.warning("WAL checkpoint failed at close: %s", type(exc).__name__)
    finally:
        try:
            conn.close()
        except sqlite3.Error:
            pass


class StoreError(ValueError):
    """A store that should exist is missing, empty or corrupt. The message is one line:
    the file, what is wrong with it, and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        super().__init__(f"{path} {problem}: {fix}")
        self.path = Path(path)
        self.problem = problem
        self.fix = fix


def check_store(path: Path | str, tables: Iterable[str], fix: str = RESTORE_FIX) -> None:
    """Raise :class:`StoreError` unless ``path`` is a non-empty SQLite database that passes
    ``PRAGMA quick_check`` and has every table in ``tables``.

    Opening it replays a ``-wal`` left by a crash, as the store itself would."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as handle:
            header = handle.read(len(_MAGIC))
    except FileNotFoundError:
        raise StoreError(p, "is missing", fix) from None
    except OSError as exc:
        raise StoreError(p, f"cannot be read ({exc.strerror or type(exc).__name__})", fix) from None
    if size == 0:
        raise StoreError(p, "is empty (0 bytes)", fix)
    if header != _MAGIC:
        raise StoreError(p, "is not an SQLite database", fix)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
        result = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(p, f"is corrupt ({type(exc).__name__})", fix) from None
    finally:
        if conn is not None:
            conn.close()
    if result != ["ok"]:
        raise StoreError(p, "is corrupt (PRAGMA quick_check failed)", fix)
    missing = sorted(set(tables) - names)
    if missing:
        raise StoreError(p, f"lacks its table(s) {', '.join(missing)} (a copy without its -wal?)", fix)


class StoreManifest:
    """``<data_dir>/stores.json``: the durable stores created in a data directory.

    This is how a service knows that a store *should* exist: a name is written here once
    its file was created with its schema, and from then on the file must exist and be
    valid (:meth:`check`). Without a manifest (a data directory from before it existed, or
    one whose manifest was lost) every store that exists is checked, and with ``together``
    a store counts as expected as soon as any of its set exists (stores always created
    together). A fresh data directory has neither: everything is created.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / MANIFEST_FILE
        self.names: set[str] = set()
        self.exists = self.path.exists()
        if self.exists:
            fix = f"restore it from a backup, or write it listing the stores of {self.data_dir} (docs/operations.md)"
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError, UnicodeDecodeError):
                raise StoreError(self.path, "is unreadable", fix) from None
            stores = data.get("stores") if isinstance(data, dict) else None
            if not isinstance(stores, list) or not all(isinstance(n, str) for n in stores):
                raise StoreError(self.path, 'is not {"stores": [file names]}', fix)
            self.names = set(stores)

    def check(self, stores: Mapping[str, Iterable[str]], *, together: bool = False, fix: str = RESTORE_FIX) -> None:
        """Check each store (file name -> its tables) that should exist or does exist."""
        present = {name for name in stores if (self.data_dir / name).exists()}
        expected = (self.names & set(stores)) | present
        if together and not self.exists and present:
            expected = set(stores)
        for name in sorted(stores):
            if name in expected:
                check_store(self.data_dir / name, stores[name], fix)

    def record(self, names: Iterable[str]) -> None:
        """Add ``names`` (stores just opened, so their files and schemas exist), durably."""
        new = self.names | set(names)
        if new == self.names and self.exists:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        body = json.dumps({"version": 1, "stores": sorted(new)}, indent=2) + "\n"
        with tmp.open("w") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.names = new
        self.exists = True
