"""One leader among the replicas of a registry: a lease row with a fencing token.

Any number of replicas serve reads, registrations and authorizations from the shared
database; exactly one at a time writes to the ledger (the batcher, the chain indexer, the
evidence anchorer). It holds the lease ``chain`` in the table ``leader_lease`` of the
outbox's database (docs/deployment.md):

- **Acquire/renew** is one upsert that succeeds only if the lease has expired or is
  already ours (same holder and token); taking over an expired lease increments the
  **token**. Expiry is computed with the *database's* clock (``clock_timestamp()``), so
  replicas' clocks do not matter.
- A replica believes it leads only until ``lease - margin`` seconds after the *start* of
  its last successful renewal (its own monotonic clock): it stops before the database
  lets anyone else in, so two replicas never both believe they lead, barring a process
  paused longer than the margin.
- **Fencing**: a write that must come only from the leader runs :meth:`Leadership.fence`
  inside its own transaction; it fails (:class:`LostLeadership`) unless the lease still
  carries this replica's token and is unexpired, and it holds the row (``FOR SHARE``) until
  that transaction ends, so a takeover cannot interleave. A leader paused after its last
  fenced write may still send one ledger transaction; the contract is the last fence there
  (an ``addMembers`` with a member already in the group reverts ``LeafAlreadyExists``, so
  no commitment is added twice) and the new leader reconciles the outbox with the chain
  before it sends anything.

With SQLite (one process owns the files) there is no lease: the process always leads.
This follows the lease-with-fencing-token pattern (M. Kleppmann, *Designing
Data-Intensive Applications*, ch. 8, "The leader and the lock").
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from registry.storage.database import Database
from registry.storage.migrations import Migration

LEASE_NAME = "chain"
#: The advisory lock serialising the replicas' ledger sends (:meth:`Leadership.send_lock`).
SEND_LOCK_KEY = int.from_bytes(b"zkidsend", "big") >> 1

MIGRATIONS = (
    Migration(
        1,
        (
            "CREATE TABLE IF NOT EXISTS leader_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL,"
            " token INTEGER NOT NULL, expires_at REAL NOT NULL)",
        ),
    ),
)

_NOW = "extract(epoch from clock_timestamp())::double precision"


class LostLeadership(RuntimeError):
    """A fenced write by a replica that no longer holds the lease."""


def replica_name() -> str:
    """This process's holder name: random, never reused. Not the host name: it is shown
    in the public ``/v1/health``; each replica logs which host and pid it is at start."""
    return f"replica-{secrets.token_hex(6)}"


class Leadership:
    """This replica's view of the lease (always the leader without a shared database)."""

    def __init__(
        self,
        db: Database | None,
        *,
        lease: float = 5.0,
        holder: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db if db is not None and db.is_postgres else None
        # Qualified, so that :meth:`fence` works on a connection of any store's schema.
        schema = getattr(self._db, "schema", None)
        self._table = f"{schema}.leader_lease" if schema else "leader_lease"
        self.lease = lease
        self.holder = holder or replica_name()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.token: int | None = None if self._db is not None else 1
        self._valid_until = float("inf") if self._db is None else 0.0
        #: The last error of a renewal (exception type), ``None`` after a success.
        self.last_error: str | None = None
        #: Number of times this replica took the lease (incl. the first).
        self.terms = 0 if self._db is not None else 1

    @property
    def shared(self) -> bool:
        """True when replicas compete for the lease (PostgreSQL)."""
        return self._db is not None

    @property
    def margin(self) -> float:
        return max(0.5, self.lease / 5)

    def is_leader(self) -> bool:
        with self._lock:
            return self.token is not None and self._monotonic() < self._valid_until

    def renew(self) -> bool:
        """Take or keep the lease; True if this replica leads afterwards."""
        if self._db is None:
            return True
        started = self._monotonic()
        with self._lock:
            # Our last token even if our own view of it lapsed: if the row still carries it,
            # nobody took the lease in between (a takeover increments it), so keeping it is safe.
            mine = self.token
        try:
            with self._db.transaction(serialize=False) as conn:
                row = conn.execute(
                    f"INSERT INTO {self._table} AS leader_lease (name, holder, token, expires_at)"
                    f" VALUES (?, ?, 1, {_NOW} + ?)"
                    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,"
                    " token = CASE WHEN leader_lease.holder = excluded.holder AND leader_lease.token = ?"
                    " THEN leader_lease.token ELSE leader_lease.token + 1 END"
                    f" WHERE leader_lease.expires_at < {_NOW}"
                    " OR (leader_lease.holder = excluded.holder AND leader_lease.token = ?)"
                    " RETURNING token",
                    (LEASE_NAME, self.holder, self.lease, mine if mine is not None else -1, mine if mine is not None else -1),
                ).fetchone()
        except Exception as exc:  # database down: leadership lapses when the lease would
            self.last_error = type(exc).__name__
            return self.is_leader()
        self.last_error = None
        with self._lock:
            if row is None:
                self.token = None
                self._valid_until = 0.0
                return False
            token = int(row[0])
            if token != self.token:
                self.terms += 1
            self.token = token
            self._valid_until = started + self.lease - self.margin
            return True

    def release(self) -> None:
        """Give the lease up (a clean stop: a successor need not wait for it to expire)."""
        if self._db is None:
            return
        with self._lock:
            token, self.token, self._valid_until = self.token, None, 0.0
        if token is None:
            return
        try:
            with self._db.transaction(serialize=False) as conn:
                conn.execute(
                    f"UPDATE {self._table} SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ?",
                    (LEASE_NAME, self.holder, token),
                )
        except Exception as exc:
            self.last_error = type(exc).__name__

    def fence(self, conn: Any) -> None:
        """Inside a transaction on the lease's database: raise :class:`LostLeadership`
        unless this replica still holds the lease; hold the row until the transaction ends."""
        if self._db is None:
            return
        token = self.token
        row = None
        if token is not None:
            row = conn.execute(
                f"SELECT token FROM {self._table} WHERE name = ? AND holder = ? AND token = ? AND expires_at > {_NOW} FOR SHARE",
                (LEASE_NAME, self.holder, token),
            ).fetchone()
        if row is None:
            with self._lock:
                self.token, self._valid_until = None, 0.0
            raise LostLeadership("this replica no longer holds the leader lease")

    @contextmanager
    def send_lock(self) -> Iterator[None]:
        """Held while a transaction is signed and handed to the node: the replicas share
        one signing key, so two of them must not read the same pending nonce (one
        transaction would fail, or replace the other). An advisory lock of the lease's
        database (PostgreSQL); nothing without a shared database (one process)."""
        if self._db is None:
            yield
            return
        with self._db.transaction(serialize=False) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SEND_LOCK_KEY,))
            yield

    def close(self) -> None:
        """Release the lease and close its database."""
        self.release()
        if self._db is not None:
            self._db.close()

    def current(self) -> dict[str, Any]:
        """The lease as the database holds it: holder, token, seconds left (for health)."""
        if self._db is None:
            return {"holder": self.holder, "token": 1, "expires_in": None}
        try:
            with self._db.connection() as conn:
                row = conn.execute(
                    f"SELECT holder, token, expires_at - {_NOW} FROM {self._table} WHERE name = ?", (LEASE_NAME,)
                ).fetchone()
        except Exception as exc:
            self.last_error = type(exc).__name__
            return {"holder": None, "token": None, "expires_in": None}
        if row is None:
            return {"holder": None, "token": None, "expires_in": None}
        return {"holder": str(row[0]), "token": int(row[1]), "expires_in": round(max(float(row[2]), 0.0), 3)}
