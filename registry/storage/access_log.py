"""The connection log: which client IP addresses talked to the registry (or a relay) in an
hour, and nothing else.

Privacy rule (docs/privacy.md, docs/api.md, docs/authorization.md "What is stored and
logged"): the registry keeps, for abuse handling only, ``(hour, client IP)`` rows in ``data_dir/access.log.sqlite`` or the ``zkid_access`` schema of a PostgreSQL
database (``hour``: the Unix time of the start of the UTC hour) and deletes them once they are older than ``settings.access_log_hours`` (at most
72). No path, method, header, body, status or user agent is ever written: paths carry
commitments and roots, bodies carry proofs.

Why hours and no counts (docs/privacy.md "Connection log"): every other store (outbox,
nullifiers, blobs, evidence) holds identifiers; a log of ``(second, IP)`` rows sorts
the IPs in arrival order, and arrival order joins them to those identifiers. An hour
bucket holds every client of that hour with no order among them: the rows are keyed by
``(hour, ip)`` (``WITHOUT ROWID``, no arrival-ordered id) and an hour is written only once
it is over, in one transaction, in key order, so neither the table, the page layout nor
the WAL records which IP of the hour came first. The current hour stays in memory
(:meth:`AccessLog.rows` includes it); a crash loses it, which for this log is
acceptable. Blocking a flood needs no disk: the per-IP rate limits are in memory
(registry/web/rate_limit.py); what an operator needs afterwards (which addresses were
seen in which hour) is what is kept. Not how many requests each made: a count per address
and hour is a fingerprint of what the address did (a conversation of three blobs is
three sends at one address and three acknowledgements at another; a client polling
while its registration waits makes as many requests as it waited), which joins
addresses to one another and to the batches on chain.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry.storage.database import Database, SqliteDatabase
from registry.storage.migrations import Migration, migrate
from registry.storage.sqlite import check_store, transaction as sqlite_transaction

FILE_NAME = "access.log.sqlite"
MAX_HOURS = 72
#: Resolution of the log (seconds): one row per client IP and UTC hour.
BUCKET = 3600
#: ``PRAGMA user_version`` of the legacy layout (0: ``(at, ip)`` rows to the second);
#: later steps are :data:`MIGRATIONS`.
SCHEMA_VERSION = 1
#: Distinct ``(hour, ip)`` pairs held in memory before the hour in progress is written
#: early: an attacker rotating addresses (an IPv6 /64 holds 2^64) must not grow the
#: registry's memory for an hour. An early write splits that hour's addresses into two
#: unordered sets (before and after it), a far coarser order than arrival.
MAX_PENDING = 100_000
#: Only a log: a damaged one is deleted, not restored.
DELETE_FIX = "delete it (it only holds connection times; a new log is started)"
_TABLE = (
    "CREATE TABLE IF NOT EXISTS connections (hour INTEGER NOT NULL, ip TEXT NOT NULL,"
    " requests INTEGER NOT NULL, PRIMARY KEY (hour, ip)) WITHOUT ROWID"
)
#: Versioned schema (registry/storage/migrations.py), on SQLite applied after the
#: file's own ``user_version`` upgrade above (:meth:`AccessLog._upgrade_sqlite`). Step 2
#: drops the request counts (presence only; the SQLite file zeroes the freed pages:
#: ``secure_delete``).
MIGRATIONS = (
    Migration(1, (_TABLE,)),
    Migration(
        2,
        (
            "CREATE TABLE connections_v2 (hour INTEGER NOT NULL, ip TEXT NOT NULL, PRIMARY KEY (hour, ip)) WITHOUT ROWID",
            "INSERT INTO connections_v2 (hour, ip) SELECT hour, ip FROM connections ORDER BY hour, ip",
            "DROP TABLE connections",
            "ALTER TABLE connections_v2 RENAME TO connections",
        ),
    ),
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AccessLog:
    """``(hour, ip)`` rows with bounded retention, in SQLite (``data_dir/access.log.sqlite``)
    or the ``zkid_access`` schema of a shared PostgreSQL database.

    ``record`` is cheap and thread-safe; ``flush`` writes the hours that are over; ``purge``
    deletes rows older than the retention. ``start`` runs both in a daemon thread
    (flush every ``flush_interval`` s, purge every ``purge_interval`` s) and purges once
    immediately, so a registry restarted after a long stop never serves old rows.

    ``database``: a :class:`registry.storage.database.Database` or the path of an SQLite
    file. Replicas sharing one PostgreSQL database each note their own addresses in
    memory (per process) and add the ones not yet in the shared rows. ``secure_delete``, the WAL checkpoint
    and the legacy layout upgrade are SQLite-only; on PostgreSQL a purge is a ``DELETE``
    whose rows stay in the table's files until (auto)vacuum reclaims them (docs/privacy.md).
    """

    def __init__(
        self,
        database: Path | str | Database,
        retention_hours: int = MAX_HOURS,
        *,
        flush_interval: float = 1.0,
        purge_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if isinstance(retention_hours, bool) or not isinstance(retention_hours, int):
            raise ValueError("retention_hours must be an integer")
        if not 1 <= retention_hours <= MAX_HOURS:
            raise ValueError(f"retention_hours must be between 1 and {MAX_HOURS}")
        self.retention_s = retention_hours * 3600
        self._flush_interval = flush_interval
        self._purge_interval = purge_interval
        self._clock = clock
        self._max_pending = max_pending
        self._pending: set[tuple[int, str]] = set()  # (hour, ip) seen, not yet written
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if isinstance(database, Database):
            self._db: Database = database
        else:
            self._db = SqliteDatabase(database, durable=False)  # a log, not an acknowledged write
        self.path: Path | None = None
        if isinstance(self._db, SqliteDatabase):
            self.path = self._db.path
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_access_log(self.path)
            self._upgrade_sqlite(self._db)
        found = migrate(self._db, MIGRATIONS)
        if found < 2 and isinstance(self._db, SqliteDatabase):
            # The counts' pages were zeroed (secure_delete); rewrite the file so that no
            # free page is left either.
            self._db.raw().execute("VACUUM")
            self._db.raw().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _connection(self, *, transaction: bool = False) -> Iterator[Any]:
        """This thread's connection (in one transaction if asked); on SQLite with
        ``secure_delete`` on (a per-connection setting), so purged rows are zeroed, not
        left in free pages."""
        if isinstance(self._db, SqliteDatabase):
            self._db.raw().execute("PRAGMA secure_delete=ON")
        if transaction:
            with self._db.transaction() as conn:
                yield conn
        else:
            with self._db.connection() as conn:
                yield conn

    def _upgrade_sqlite(self, sqlite: SqliteDatabase) -> None:
        """SQLite only: create the table; fold a log of an earlier version (``(at, ip)``
        to the second) into hour buckets, then rewrite the file (``VACUUM``) and empty the
        WAL so that no page keeps a row to the second."""
        db = sqlite.raw()
        db.execute("PRAGMA secure_delete=ON")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer version (schema {version} > {SCHEMA_VERSION})")
        columns = [str(r[1]) for r in db.execute("PRAGMA table_info(connections)")]
        with sqlite_transaction(db):
            if columns and "hour" not in columns:
                db.execute("ALTER TABLE connections RENAME TO connections_v0")
            db.execute(_TABLE)
            if columns and "hour" not in columns:
                db.execute(
                    f"INSERT INTO connections (hour, ip, requests) SELECT (at / {BUCKET}) * {BUCKET} AS h, ip, count(*)"
                    " FROM connections_v0 GROUP BY h, ip ORDER BY h, ip"
                )
                db.execute("DROP TABLE connections_v0")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if columns and "hour" not in columns:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ recording

    def record(self, ip: str | None, when: float | None = None) -> None:
        """Note that ``ip`` made a request in the hour of ``when`` (default: now)."""
        hour = int(self._clock() if when is None else when) // BUCKET * BUCKET
        key = (hour, ip if ip else "unknown")
        with self._lock:
            self._pending.add(key)

    def flush(self, *, final: bool = False) -> int:
        """Write the hours that are over (every hour with ``final``, at close), in one
        transaction in key order; return how many ``(hour, ip)`` rows were new."""
        current = int(self._clock()) // BUCKET * BUCKET
        with self._lock:
            rows = sorted(k for k in self._pending if final or k[0] < current)
            self._pending.difference_update(rows)
        if not rows:
            return 0
        with self._db_lock:
            with self._connection(transaction=True) as conn:
                existing = sum(
                    1 for h, ip in rows
                    if conn.execute("SELECT 1 FROM connections WHERE hour = ? AND ip = ?", (h, ip)).fetchone()
                )
                # Another replica (or an early write of this hour) may hold the same rows.
                conn.executemany(
                    "INSERT INTO connections (hour, ip) VALUES (?, ?) ON CONFLICT (hour, ip) DO NOTHING", rows
                )
            if isinstance(self._db, SqliteDatabase):
                # The WAL would keep the page images of earlier hours in write order: fold it.
                self._db.raw().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return len(rows) - existing

    def pending_count(self) -> int:
        """How many ``(hour, ip)`` pairs are held in memory, not yet written."""
        with self._lock:
            return len(self._pending)

    def purge(self, now: float | None = None) -> int:
        """Delete the hours older than the retention; return how many rows went."""
        cutoff = int((self._clock() if now is None else now) - self.retention_s)
        with self._lock:
            self._pending = {k for k in self._pending if k[0] + BUCKET > cutoff}
        with self._db_lock, self._connection() as conn:
            # An hour goes once all of it is older than the retention.
            return int(conn.execute("DELETE FROM connections WHERE hour + ? <= ?", (BUCKET, cutoff)).rowcount)

    def rows(self) -> list[tuple[int, str]]:
        """``(hour, ip)``: everything stored plus the hour not yet written (tests, an
        operator answering an abuse report)."""
        with self._db_lock, self._connection() as conn:
            stored = {(int(h), str(i)) for h, i in conn.execute("SELECT hour, ip FROM connections").fetchall()}
        with self._lock:
            stored |= self._pending
        return sorted(stored)

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
            self.flush(final=self.pending_count() >= self._max_pending)
            if time.monotonic() - last_purge >= self._purge_interval:
                self.purge()
                last_purge = time.monotonic()

    def close(self) -> None:
        """Stop the thread, write what is left, purge, close the database."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush(final=True)
        self.purge()
        with self._db_lock:
            self._db.close()  # SQLite: the WAL checkpointed into the file first


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
    """ASGI middleware noting each HTTP request's ``(hour, client IP)`` and nothing else."""

    def __init__(self, app: ASGIApp, log: AccessLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            self.log.record(client_ip(scope))
        await self.app(scope, receive, send)
