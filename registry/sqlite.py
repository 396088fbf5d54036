"""How every store in ``registry`` opens SQLite: WAL mode, and fsync per commit where a
client was told "accepted" (outbox, nullifiers, evidence, blobs) but not where the data
can be rebuilt (the chain index) or is only a log (connection times)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


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
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
