"""The outbox: registrations accepted from clients and not yet final on the ledger.

A registration is acknowledged only once its row is committed here (SQLite, WAL,
``synchronous=FULL``; or PostgreSQL, whose commit is durable), so an acknowledged
registration survives a crash, a power cut or a ledger outage; the batcher
(:mod:`registry.service.batcher`) then anchors it. The outbox is the one store that is never
rebuilt from the chain (``data_dir/outbox.sqlite``, or the schema ``zkid_outbox``).

Replicas (docs/deployment.md): any number of registry processes may share one PostgreSQL
outbox. Every replica enqueues; only the leader's batcher moves rows on (``take_pending``,
``mark_*``, ``reopen_from``, the ``spend`` table). What makes that safe across replicas is in
the database, not in memory: "already pending" is the partial unique index below (two
replicas enqueueing one commitment at once: the second insert fails), and every
multi-statement write runs in one transaction serialised across replicas
(:meth:`registry.storage.database.Database.transaction`).

Row states::

    pending  -> sent      an addMembers transaction carrying it was broadcast (tx_hash)
    sent     -> included  that transaction is mined on the canonical chain (block_number)
    included -> final     ... and has the required confirmations
    sent     -> pending   the transaction vanished (reorganisation, eviction, a ledger
                          restored from an older state) or reverted for a curable reason
    included/final -> sent  the chain rolled back below its block: the transaction is looked
                          up again (and the rows go back to pending if it is gone)
    *        -> failed    the ledger refuses it for good (e.g. not our group; terminal,
                          with a reason code in ``last_error``)

``final`` is not forever on a ledger that can roll back (a local Anvil restored from its
last state dump, a deep reorganisation): the indexer records every rollback and the
batcher reopens the rows above it (:meth:`Outbox.reopen_from`).

Privacy (docs/privacy.md): the rows hold commitments, so they hold no time finer than the
hour (``created_at``/``updated_at`` are the start of a UTC hour) and no arrival-ordered id
(``id`` is random, the table's rowid, so the b-tree is sorted by it, not by arrival; the
rows of one request get consecutive ids from a random start, which keeps the client's own
order within its request and orders requests at random). How long a registration has waited, which the batcher and health need to the
second, is kept in memory only (:meth:`Outbox.pending_groups`, :meth:`Outbox.oldest_unsettled`).
Schema 2 brought this; opening an older outbox rewrites its rows (random ids, hours) and
the file (``VACUUM``), so no page keeps the old ids or times.

``attempts`` counts broadcasts. A commitment can be in at most one active
(pending/sent/included) row per group (a partial unique index), which makes "already
pending" an atomic check.

Schema versions: :data:`MIGRATIONS` (:mod:`registry.storage.migrations`); step 1 is the
layout of ``PRAGMA user_version`` 2. SQLite files of user_version 0 and 1 are upgraded to
it first (SQLite-only code, :meth:`Outbox._upgrade_legacy`).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import RegistryError as RegistryError  # re-exported: raised here and by the facade
from registry._utils.integers import MAX_GROUP_ID as MAX_GROUP_ID  # re-exported: the API bound (docs/api.md)
from registry._utils.integers import bounded_int, range_text
from registry.service.group_commit import GroupCommit
from registry.storage.database import Database, SqliteDatabase
from registry.storage.migrations import Migration, SchemaTooNew, migrate
from zk.field import R

FILE_NAME = "outbox.sqlite"
STATES = ("pending", "sent", "included", "final", "failed")
#: Not yet final on the canonical chain.
ACTIVE_STATES = ("pending", "sent", "included")
#: ``PRAGMA user_version`` of the last SQLite-only layout (0: before ``final`` existed,
#: when ``included`` meant confirmed); versions after it are :data:`MIGRATIONS`.
SCHEMA_VERSION = 2
#: Resolution of the times stored beside commitments (seconds).
TIME_RESOLUTION = 3600


def coarse_time(t: float) -> int:
    """``t`` rounded down to :data:`TIME_RESOLUTION` (the start of its UTC hour)."""
    return int(t) // TIME_RESOLUTION * TIME_RESOLUTION


def random_id() -> int:
    """A row id that says nothing about arrival: uniform in [1, 2^62]."""
    return secrets.randbits(62) + 1
#: Most commitments accepted in one ``enqueue`` call (one request of a client).
MAX_PER_CALL = 1000


@dataclass(frozen=True)
class OutboxRow:
    id: int
    group_id: int
    commitment: int
    state: str
    tx_hash: str | None
    attempts: int
    created_at: float
    updated_at: float
    block_number: int | None
    last_error: str | None


_COLUMNS = "id, group_id, commitment, state, tx_hash, attempts, created_at, updated_at, block_number, last_error"


def _row(values: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        id=int(values[0]),
        group_id=int(values[1]),
        commitment=int(values[2]),
        state=str(values[3]),
        tx_hash=values[4],
        attempts=int(values[5]),
        created_at=float(values[6]),
        updated_at=float(values[7]),
        block_number=None if values[8] is None else int(values[8]),
        last_error=values[9],
    )


def check_int(value: object, name: str, high: int, low: int = 0) -> int:
    """``value`` if it is an integer in ``[low, high]``, else ``RegistryError("malformed")``
    naming the field and the range (never the value)."""
    checked = bounded_int(value, low, high)
    if checked is None:
        raise RegistryError("malformed", f"{name} must be an integer in {range_text(low, high)}")
    return checked


def check_group_id(group_id: object) -> int:
    return check_int(group_id, "group_id", MAX_GROUP_ID)


def check_commitments(commitments: object) -> list[int]:
    """A non-empty list of distinct field elements in (0, r): never reduced."""
    if isinstance(commitments, (str, bytes)) or not isinstance(commitments, Iterable):
        raise RegistryError("malformed", "commitments must be a list of integers")
    values = list(commitments)
    if not values:
        raise RegistryError("malformed", "no commitments given")
    if len(values) > MAX_PER_CALL:
        raise RegistryError("too_many", f"at most {MAX_PER_CALL} commitments per request")
    for i, c in enumerate(values):
        if isinstance(c, bool) or not isinstance(c, int):
            raise RegistryError("invalid_commitment", f"commitment {i} is not an integer")
        if not 0 < c < R:
            raise RegistryError("invalid_commitment", f"commitment {i} is not in the field (0 < c < r)")
    seen: set[int] = set()
    for c in values:
        if c in seen:  # named (the caller's own value), not its position: what to remove
            raise RegistryError("duplicate", f"commitment {c} is repeated in the request")
        seen.add(c)
    return values


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS registrations (
        id INTEGER PRIMARY KEY,
        group_id INTEGER NOT NULL,
        commitment TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'included', 'final', 'failed')),
        tx_hash TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        block_number INTEGER,
        last_error TEXT
    )""",
    # "Already pending" across threads and replicas: at most one active row per commitment.
    "CREATE UNIQUE INDEX IF NOT EXISTS registrations_active ON registrations (group_id, commitment)"
    " WHERE state IN ('pending', 'sent', 'included')",
    "CREATE INDEX IF NOT EXISTS registrations_lookup ON registrations (group_id, commitment)",
    "CREATE INDEX IF NOT EXISTS registrations_state ON registrations (state, group_id, id)",
    "CREATE INDEX IF NOT EXISTS registrations_tx ON registrations (tx_hash)",
    "CREATE INDEX IF NOT EXISTS registrations_block ON registrations (block_number)",
    # What the batcher's transactions cost (wei), for the hourly budget: the most
    # a transaction may cost when it is sent, its real fee once mined.
    "CREATE TABLE IF NOT EXISTS spend (tx_hash TEXT PRIMARY KEY, at REAL NOT NULL, wei INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS spend_at ON spend (at)",
)

#: The outbox's schema steps (:mod:`registry.storage.migrations`): 1 = user_version 2.
MIGRATIONS = (Migration(1, _SCHEMA),)


class Outbox:
    """Durable registrations; safe to share between threads (SQLite: one connection each;
    PostgreSQL: a pool) and, on PostgreSQL, between replicas (module docstring).

    ``store`` is a path (an SQLite file, as before) or a :class:`Database`.
    ``is_member(group_id, commitment)``, when given, tells whether a commitment is already a
    member on chain (the chain index): such registrations are refused as duplicates.

    Per process (memory only): the arrival times behind :meth:`pending_groups` and
    :meth:`oldest_unsettled`. Rows another replica enqueued count, on the leader, from when
    its batcher first sees them (as rows of unknown arrival after a restart do).
    """

    def __init__(
        self,
        store: Path | str | Database,
        is_member: Callable[[int, int], bool] | None = None,
        clock: Callable[[], float] = time.time,
        max_backlog: int | None = None,
    ) -> None:
        #: Called inside every leader-only write transaction (the batcher's transitions,
        #: reopen_from, record_spend) with its connection; raises to refuse the write when
        #: this replica no longer leads (registry/service/leadership.py). None: no check.
        self.fence: Callable[[Any], None] | None = None
        if isinstance(store, Database):
            self._db = store
        else:
            Path(store).parent.mkdir(parents=True, exist_ok=True)
            # An acknowledged registration must survive a power cut: fsync on every commit.
            self._db = SqliteDatabase(store, durable=True)
        #: the SQLite file (None on PostgreSQL)
        self.path: Path | None = self._db.path if isinstance(self._db, SqliteDatabase) else None
        self.is_member = is_member
        #: most registrations of one group not yet on chain; beyond: ``backlog_full`` (503)
        self.max_backlog = max_backlog
        self._clock = clock
        # SQLite: writers of this process queue here rather than in SQLite's busy handler,
        # whose sleeps (milliseconds) would cut the throughput of concurrent registrations.
        # PostgreSQL serialises writers in the database (an advisory lock per transaction).
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if isinstance(self._db, SqliteDatabase) else nullcontext()
        )
        #: group -> wall time since which it has had registrations not yet on chain (memory
        #: only: the store keeps hours; after a restart a group counts from when it is seen)
        self._since: dict[int, float] = {}
        #: group -> {row id: wall time of arrival} of the pending rows this process saw
        #: arrive (memory only): a batch's wait counts from its oldest *pending* row, so a
        #: registration arriving while an earlier batch is in flight waits for its own floor
        self._arrived: dict[int, dict[int, float]] = {}
        #: group -> since when it has had pending rows of unknown arrival (a restart, rows
        #: back to pending after a vanished transaction)
        self._unknown_since: dict[int, float] = {}
        self._since_lock = threading.Lock()
        #: SQLite: concurrent enqueues share one durable commit, each acknowledged only
        #: once it is on disk (registry/service/group_commit.py); under the writer lock.
        self._group: GroupCommit | None = None
        if isinstance(self._db, SqliteDatabase):
            self._group = GroupCommit(self._db.raw, self._write_lock)
            self._upgrade_legacy(self._db)
        with self._write_lock:
            migrate(self._db, MIGRATIONS)

    @property
    def database(self) -> Database:
        return self._db

    def _upgrade_legacy(self, db: SqliteDatabase) -> None:
        """SQLite files from before :data:`MIGRATIONS`: ``PRAGMA user_version`` 0 or 1 ->
        2 (= step 1); a newer user_version is refused."""
        conn = db.raw()
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(db.describe, version, SCHEMA_VERSION)
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'registrations'"
        ).fetchone()
        if not exists or version == SCHEMA_VERSION:
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        with self._write_lock, db.transaction() as tx:
            if version < 1:
                # The state CHECK changes: rebuild the table; confirmed rows become final.
                tx.execute("ALTER TABLE registrations RENAME TO registrations_v0")
                for name in ("registrations_active", "registrations_lookup", "registrations_state", "registrations_tx"):
                    tx.execute(f"DROP INDEX IF EXISTS {name}")
                self._create(tx)
                tx.execute(
                    f"INSERT INTO registrations ({_COLUMNS}) SELECT id, group_id, commitment,"
                    " CASE state WHEN 'included' THEN 'final' ELSE state END, tx_hash, attempts,"
                    " created_at, updated_at, block_number, last_error FROM registrations_v0"
                )
                tx.execute("DROP TABLE registrations_v0")
            self._rekey(tx)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # The old ids and times may survive in free pages and the WAL: rewrite the file.
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @staticmethod
    def _rekey(conn: Any) -> None:
        """Schema 1 -> 2: random ids instead of AUTOINCREMENT ones, times to the hour."""
        conn.execute("ALTER TABLE registrations RENAME TO registrations_v1")
        for name in ("registrations_active", "registrations_lookup", "registrations_state", "registrations_tx", "registrations_block"):
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        Outbox._create(conn)
        old = conn.execute(
            "SELECT group_id, commitment, state, tx_hash, attempts, created_at, updated_at, block_number, last_error"
            " FROM registrations_v1 ORDER BY commitment"
        ).fetchall()
        used: set[int] = set()
        for values in old:
            new_id = random_id()
            while new_id in used:
                new_id = random_id()
            used.add(new_id)
            conn.execute(
                f"INSERT INTO registrations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (new_id, *values[:5], coarse_time(float(values[5])), coarse_time(float(values[6])), *values[7:]),
            )
        conn.execute("DROP TABLE registrations_v1")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            conn.execute("DELETE FROM sqlite_sequence WHERE name IN ('registrations', 'registrations_v0', 'registrations_v1')")

    @staticmethod
    def _create(conn: Any) -> None:
        for statement in _SCHEMA:
            conn.execute(statement)

    # ------------------------------------------------------------------ connections

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """One write transaction (serialised: this process's lock on SQLite, an advisory
        lock across replicas on PostgreSQL)."""
        with self._write_lock, self._db.transaction() as conn:
            yield conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._db.connection() as conn:
            return list(conn.execute(sql, params).fetchall())

    def _write(self, sql: str, params: Iterable[Sequence[Any]]) -> int:
        """A leader-only write (the batcher's transitions): fenced (:attr:`fence`)."""
        with self._writing() as conn:
            if self.fence is not None:
                self.fence(conn)
            changed = conn.executemany(sql, params).rowcount
        return int(changed)

    # ------------------------------------------------------------------ accepting

    def enqueue(self, group_id: int, commitments: Sequence[int]) -> list[OutboxRow]:
        """Record registrations durably (all or none) and return their rows.

        Raises :class:`RegistryError`: ``malformed``/``too_many``/``invalid_commitment`` for
        bad input, ``duplicate`` if a commitment is repeated, already a member (``is_member``)
        or already pending in this group.
        """
        group = check_group_id(group_id)
        values = check_commitments(commitments)
        if self.is_member is not None:
            for i, c in enumerate(values):
                if self.is_member(group, c):
                    raise RegistryError("duplicate", f"commitment {c} is already a member of group {group}")
        arrived = self._clock()
        now = coarse_time(arrived)

        def write(conn: Any) -> list[int]:
            if self.max_backlog is not None:
                (waiting,) = conn.execute(
                    "SELECT count(*) FROM registrations WHERE state IN ('pending', 'sent') AND group_id = ?",
                    (group,),
                ).fetchone()
                if int(waiting) + len(values) > self.max_backlog:
                    raise RegistryError(
                        "backlog_full",
                        f"group {group} has {int(waiting)} registrations waiting for the ledger; try again later",
                    )
            # One request's rows get consecutive ids from a random start: a batch keeps the
            # order the client chose within its request, and orders requests at random.
            base = random_id()
            while base + len(values) > 2**62 or conn.execute(
                "SELECT 1 FROM registrations WHERE id BETWEEN ? AND ? LIMIT 1", (base, base + len(values) - 1)
            ).fetchone():
                base = random_id()
            ids = []
            for i, c in enumerate(values):
                row_id = base + i
                try:
                    conn.execute(
                        "INSERT INTO registrations (id, group_id, commitment, state, created_at, updated_at)"
                        " VALUES (?, ?, ?, 'pending', ?, ?)",
                        (row_id, group, str(c), now, now),
                    )
                except sqlite3.IntegrityError:
                    raise RegistryError(
                        "duplicate", f"commitment {c} is already registered (pending) in group {group}"
                    ) from None
                ids.append(row_id)
            return ids

        if self._group is not None:  # SQLite: shares a durable commit with concurrent enqueues
            ids = self._group.run(write)
        else:
            with self._writing() as conn:
                ids = write(conn)
        with self._since_lock:
            self._since.setdefault(group, arrived)
            self._arrived.setdefault(group, {}).update((i, arrived) for i in ids)
        return [
            OutboxRow(i, group, c, "pending", None, 0, now, now, None, None) for i, c in zip(ids, values)
        ]

    # ------------------------------------------------------------------ reading

    def get(self, group_id: int, commitment: int) -> OutboxRow | None:
        """The active (pending/sent/included) row of a commitment, else its most recent row."""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM registrations WHERE group_id = ? AND commitment = ?"
            " ORDER BY state IN ('pending', 'sent', 'included') DESC, state = 'final' DESC, updated_at DESC LIMIT 1",
            (group_id, str(commitment)),
        )
        return _row(rows[0]) if rows else None

    def rows(self, state: str | None = None, group_id: int | None = None) -> list[OutboxRow]:
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            if state not in STATES:
                raise ValueError(f"unknown state {state!r}")
            where.append("state = ?")
            params.append(state)
        if group_id is not None:
            where.append("group_id = ?")
            params.append(group_id)
        sql = f"SELECT {_COLUMNS} FROM registrations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_row(r) for r in self._read(sql + " ORDER BY id", params)]

    def counts(self) -> dict[str, int]:
        result = dict.fromkeys(STATES, 0)
        for state, n in self._read("SELECT state, count(*) FROM registrations GROUP BY state"):
            result[str(state)] = int(n)
        return result

    def unsettled_count(self) -> int:
        """Registrations not yet on chain (pending, or sent and not mined)."""
        ((n,),) = self._read("SELECT count(*) FROM registrations WHERE state IN ('pending', 'sent')")
        return int(n)

    def unconfirmed_count(self) -> int:
        """Registrations mined but without their confirmations yet."""
        ((n,),) = self._read("SELECT count(*) FROM registrations WHERE state = 'included'")
        return int(n)

    def _waiting_since(self, groups: Iterable[int]) -> dict[int, float]:
        """Since when each of ``groups`` (those with rows not yet on chain) has been waiting,
        from memory (a group first seen now, e.g. after a restart, counts from now); groups
        no longer listed are forgotten."""
        now = self._clock()
        with self._since_lock:
            since = {g: self._since.get(g, now) for g in groups}
            self._since = dict(since)
        return since

    def oldest_unsettled(self) -> float | None:
        """Since when (wall time, this process's memory) the longest-waiting group has had
        registrations not yet on chain (None if none)."""
        groups = [int(g) for (g,) in self._read(
            "SELECT DISTINCT group_id FROM registrations WHERE state IN ('pending', 'sent')"
        )]
        since = self._waiting_since(groups)
        return min(since.values()) if since else None

    def pending_groups(self) -> list[tuple[int, int, float]]:
        """(group_id, pending count, waiting since) of every group with pending rows, the
        longest-waiting first. "Since" is the arrival of the group's oldest *pending*
        registration (memory only; rows of unknown arrival, after a restart, count from when
        they are first seen): not that of rows already sent, so a registration arriving
        while an earlier batch is in flight waits for its own k-anonymity floor."""
        counts = {
            int(g): int(n)
            for g, n in self._read(
                "SELECT group_id, count(*) FROM registrations WHERE state IN ('pending', 'sent') GROUP BY group_id"
            )
        }
        pending = {
            int(g): int(n)
            for g, n in self._read(
                "SELECT group_id, count(*) FROM registrations WHERE state = 'pending' GROUP BY group_id"
            )
        }
        self._waiting_since(counts)  # keeps oldest_unsettled's memory in step
        now = self._clock()
        since: dict[int, float] = {}
        with self._since_lock:
            for g in [g for g in self._arrived if g not in pending]:
                del self._arrived[g]
            known = {g: self._arrived.get(g, {}) for g in pending}
            for g in [g for g in self._unknown_since if g not in pending or pending[g] <= len(known[g])]:
                del self._unknown_since[g]
            for g, n in pending.items():
                times = list(known[g].values())
                if n > len(times):  # rows of unknown arrival
                    times.append(self._unknown_since.setdefault(g, now))
                since[g] = min(times)
        return sorted(((g, n, since[g]) for g, n in pending.items()), key=lambda t: (t[2], t[0]))

    def _left_pending(self, ids: Sequence[int]) -> None:
        """Forget the arrival of rows that left ``pending`` (sent, mined or failed)."""
        gone = set(ids)
        with self._since_lock:
            for g in list(self._arrived):
                rows = self._arrived[g]
                for i in gone & rows.keys():
                    del rows[i]
                if not rows:
                    del self._arrived[g]

    def take_pending(self, group_id: int, limit: int) -> list[OutboxRow]:
        """``limit`` pending rows of a group, the oldest hours first and, within an hour, in
        the random order of their ids (not arrival order); nothing is changed."""
        return [
            _row(r)
            for r in self._read(
                f"SELECT {_COLUMNS} FROM registrations WHERE state = 'pending' AND group_id = ?"
                " ORDER BY created_at, id LIMIT ?",
                (group_id, limit),
            )
        ]

    def attempted_pending(self) -> list[OutboxRow]:
        """Pending rows that were handed to the ledger at least once (maybe sent: a crash
        between the broadcast and ``mark_sent`` leaves them so)."""
        return [
            _row(r)
            for r in self._read(
                f"SELECT {_COLUMNS} FROM registrations WHERE state = 'pending' AND attempts > 0 ORDER BY id"
            )
        ]

    # ------------------------------------------------------------------ transitions

    def mark_attempt(self, ids: Sequence[int]) -> None:
        """Count a broadcast about to happen (before it, so a crash cannot hide it)."""
        now = coarse_time(self._clock())
        self._write(
            "UPDATE registrations SET attempts = attempts + 1, updated_at = ? WHERE id = ? AND state = 'pending'",
            [(now, i) for i in ids],
        )

    def mark_sent(self, ids: Sequence[int], tx_hash: str | None) -> None:
        """Broadcast (or found on chain in a transaction not yet known: ``tx_hash`` None)."""
        now = coarse_time(self._clock())
        self._write(
            "UPDATE registrations SET state = 'sent', tx_hash = ?, block_number = NULL, updated_at = ?,"
            " last_error = NULL WHERE id = ? AND state IN ('pending', 'sent', 'included', 'final')",
            [(tx_hash, now, i) for i in ids],
        )
        self._left_pending(ids)

    def mark_included(
        self, ids: Sequence[int], block_number: int | None, tx_hash: str | None = None, *, final: bool = True
    ) -> None:
        """Mined at ``block_number``; ``final`` once it has the required confirmations."""
        now = coarse_time(self._clock())
        self._write(
            "UPDATE registrations SET state = ?, block_number = ?, tx_hash = coalesce(?, tx_hash),"
            " updated_at = ?, last_error = NULL WHERE id = ? AND state IN ('pending', 'sent', 'included')",
            [("final" if final else "included", block_number, tx_hash, now, i) for i in ids],
        )
        self._left_pending(ids)

    def mark_pending(self, ids: Sequence[int], error: str | None = None) -> None:
        """Back to pending (the transaction vanished or reverted curably)."""
        now = coarse_time(self._clock())
        self._write(
            "UPDATE registrations SET state = 'pending', tx_hash = NULL, block_number = NULL,"
            " updated_at = ?, last_error = coalesce(?, last_error) WHERE id = ? AND state IN ('pending', 'sent')",
            [(now, error, i) for i in ids],
        )

    def mark_failed(self, ids: Sequence[int], error: str) -> None:
        """Refused for good; ``error`` starts with a reason code (``code: text``)."""
        now = coarse_time(self._clock())
        self._write(
            "UPDATE registrations SET state = 'failed', updated_at = ?, last_error = ?"
            " WHERE id = ? AND state IN ('pending', 'sent')",
            [(now, error, i) for i in ids],
        )
        self._left_pending(ids)

    def reopen_from(self, block_number: int) -> int:
        """The chain no longer holds blocks from ``block_number`` on (a rollback): rows
        recorded as mined there go back to ``sent`` (their transaction is looked up again).
        Returns how many."""
        now = coarse_time(self._clock())
        with self._writing() as conn:
            if self.fence is not None:
                self.fence(conn)
            cur = conn.execute(
                "UPDATE registrations SET state = 'sent', block_number = NULL, updated_at = ?"
                " WHERE state IN ('included', 'final') AND block_number >= ?",
                (now, block_number),
            )
        return int(cur.rowcount)

    def in_flight(self) -> list[OutboxRow]:
        """Rows sent or mined but not final: the batcher follows them from their receipts."""
        return [
            _row(r)
            for r in self._read(
                f"SELECT {_COLUMNS} FROM registrations WHERE state IN ('sent', 'included') ORDER BY id"
            )
        ]

    # ------------------------------------------------------------------ spending

    def record_spend(self, tx_hash: str, wei: int) -> None:
        """What a transaction of the batcher costs (its cap when sent, its fee once mined;
        the latest call wins, the time of the first stays)."""
        with self._writing() as conn:
            if self.fence is not None:
                self.fence(conn)
            conn.execute(
                "INSERT INTO spend (tx_hash, at, wei) VALUES (?, ?, ?)"
                " ON CONFLICT(tx_hash) DO UPDATE SET wei = excluded.wei",
                (tx_hash, self._clock(), int(wei)),
            )

    def spent_since(self, since: float) -> int:
        """Wei spent (or committed by transactions in flight) since ``since``."""
        return sum(int(w) for (w,) in self._read("SELECT wei FROM spend WHERE at >= ?", (since,)))

    def purge_spend(self, before: float) -> None:
        with self._write_lock, self._db.connection() as conn:
            conn.execute("DELETE FROM spend WHERE at < ?", (before,))
