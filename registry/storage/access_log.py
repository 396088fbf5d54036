"""The connection log: when a client IP address talked to the registry, and nothing else.

Privacy rule (docs/api.md, docs/authorization.md "What is stored and logged"): the
registry keeps, for abuse handling only, ``(unix time in whole seconds, client IP)``
rows in ``data_dir/access.log.sqlite`` and deletes them once they are older than
``settings.access_log_hours`` (at most 72). No path, method, header, body, status or
user agent is ever written: paths carry commitments and roots, bodies carry proofs.

Rows are deduplicated per (second, IP) in memory and written by a background thread in
small transactions, so that logging costs the request path a dict lookup, not a disk
write; a crash loses at most the last flush interval, which for this log is acceptable.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from registry.storage.sqlite import check_store, close_connection, connect

FILE_NAME = "access.log.sqlite"
MAX_HOURS = 72
#: Only a log: a damaged one is deleted, not restored.
DELETE_FIX = "delete it (it only holds connection times; a new log is started)"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AccessLog:
    """``(time, ip)`` rows in SQLite with bounded retention.

    ``record`` is cheap and thread-safe; ``flush`` writes what was recorded; ``purge``
    deletes rows older than the retention. ``start`` runs both in a daemon thread
    (flush every ``flush_interval`` s, purge every ``purge_interval`` s) and purges once
    immediately, so a registry restarted after a long stop never serves old rows.
    """

    def __init__(
        self,
        path: Path | str,
        retention_hours: int = MAX_HOURS,
        *,
        flush_interval: float = 1.0,
        purge_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(retention_hours, bool) or not isinstance(retention_hours, int):
            raise ValueError("retention_hours must be an integer")
        if not 1 <= retention_hours <= MAX_HOURS:
            raise ValueError(f"retention_hours must be between 1 and {MAX_HOURS}")
        self.path = Path(path)
        self.retention_s = retention_hours * 3600
        self._flush_interval = flush_interval
        self._purge_interval = purge_interval
        self._clock = clock
        self._pending: dict[tuple[int, str], None] = {}  # insertion-ordered set
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_access_log(self.path)
        self._db = connect(self.path, durable=False)  # a log, not an acknowledged write
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS connections ("
            " at INTEGER NOT NULL, ip TEXT NOT NULL, PRIMARY KEY (at, ip)) WITHOUT ROWID"
        )

    # ------------------------------------------------------------------ recording

    def record(self, ip: str | None, when: float | None = None) -> None:
        """Remember that ``ip`` connected at ``when`` (default: now), to the second."""
        at = int(self._clock() if when is None else when)
        key = (at, ip if ip else "unknown")
        with self._lock:
            self._pending[key] = None

    def flush(self) -> int:
        """Write the recorded rows; return how many were new."""
        with self._lock:
            rows = list(self._pending)
            self._pending.clear()
        if not rows:
            return 0
        with self._db_lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO connections (at, ip) VALUES (?, ?)", rows)
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    def purge(self, now: float | None = None) -> int:
        """Delete rows older than the retention; return how many went."""
        cutoff = int((self._clock() if now is None else now) - self.retention_s)
        with self._db_lock:
            return self._db.execute("DELETE FROM connections WHERE at < ?", (cutoff,)).rowcount

    def rows(self) -> list[tuple[int, str]]:
        """Everything stored (tests, an operator answering an abuse report)."""
        with self._db_lock:
            return [(int(a), str(i)) for a, i in self._db.execute("SELECT at, ip FROM connections ORDER BY at, ip")]

    # ------------------------------------------------------------------ background thread

    def start(self) -> None:
        if self._thread is not None:
            return
        self.purge()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="zkid-access-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_purge = time.monotonic()
        while not self._stop.wait(self._flush_interval):
            self.flush()
            if time.monotonic() - last_purge >= self._purge_interval:
                self.purge()
                last_purge = time.monotonic()

    def close(self) -> None:
        """Stop the thread, write what is left, purge, close the database."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()
        self.purge()
        with self._db_lock:
            close_connection(self._db)


def check_access_log(path: Path | str) -> None:
    """Refuse (:class:`registry.storage.sqlite.StoreError`) a connection log that exists but is not
    a valid one; a missing or empty file is simply a new log."""
    p = Path(path)
    if p.exists() and p.stat().st_size > 0:
        check_store(p, ("connections",), DELETE_FIX)


def trusted_proxy(value: str) -> str:
    """An operator-named trusted proxy: an IP address or network (CIDR), normalized.
    Raises ``ValueError`` for anything else (``*`` and host names included: trusting every
    peer's ``X-Forwarded-For`` would let any client choose its logged, rate-limited IP)."""
    text = value.strip()
    try:
        if "/" in text:
            return str(ipaddress.ip_network(text, strict=False))
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"trusted proxy {value!r} is not an IP address or network (CIDR)") from None


def proxy_options(trusted: Sequence[str]) -> dict[str, Any]:
    """uvicorn's options for ``X-Forwarded-For``: believed only from the ``trusted`` proxies,
    ignored when there are none. uvicorn's own default believes any peer on 127.0.0.1,
    which is every client of a reverse proxy or onion service on the same host."""
    proxies = [trusted_proxy(p) for p in trusted]
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}


def client_ip(scope: Scope) -> str | None:
    """The client address of an ASGI connection: the peer's, unless the server was told to
    believe a trusted proxy's ``X-Forwarded-For`` (:func:`proxy_options`); trusting it from
    anyone would let a client write arbitrary rows and evade per-IP limits."""
    client = scope.get("client")
    if client and isinstance(client, (tuple, list)) and client[0]:
        return str(client[0])
    return None


class AccessLogMiddleware:
    """ASGI middleware recording ``(time, client IP)`` of each HTTP request and nothing else."""

    def __init__(self, app: ASGIApp, log: AccessLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            self.log.record(client_ip(scope))
        await self.app(scope, receive, send)
