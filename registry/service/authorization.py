"""Anonymous send authorization: the checks of ``docs/authorization.md``.

The same ``Authorizer`` runs inside the registry (``POST /v1/authorize``) and inside a
relay that checks locally, so both paths give the same answer on the same input. Its
collaborators are narrow interfaces: where group parameters come from, which roots are
valid (the chain index, or roots read from the ledger), and an atomic nullifier store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from registry._utils.integers import MAX_GROUP_ID as MAX_GROUP_ID  # re-exported: the bound of parse_group_id
from registry._utils.integers import bounded_int
from registry._utils.integers import json_integer as json_integer  # re-exported (registry/web)
from registry.service.group_commit import GroupCommit
from registry.storage.database import Database, DatabaseStore, SqliteDatabase
from registry.storage.migrations import Migration, migrate
from zk import strict_json
from zk.proof import ProofError, SemaphoreProof, verify_proof
from zk.relay_scope import (
    RegistryRef,
    ScopeError,
    ScopeVersionError,
    acceptable_epochs,
    blob_message,
    check_epoch_parameters,
    decode_scope,
)


class Reason(str, Enum):
    """Machine-readable outcome codes, in the order the checks run."""

    OK = "ok"
    MALFORMED = "malformed"
    BAD_SCOPE = "bad_scope"
    #: an LZE1 scope (docs/authorization.md "Migration from LZE1")
    SCOPE_VERSION_UNSUPPORTED = "scope_version_unsupported"
    #: the scope's registry tag is another deployment's (chain id, registry contract)
    WRONG_REGISTRY = "wrong_registry"
    WRONG_GROUP = "wrong_group"
    UNKNOWN_GROUP = "unknown_group"
    GROUP_NOT_SERVED = "group_not_served"
    WRONG_EPOCH = "wrong_epoch"
    SLOT_OUT_OF_RANGE = "slot_out_of_range"
    MESSAGE_MISMATCH = "message_mismatch"
    UNKNOWN_ROOT = "unknown_root"
    EXPIRED_ROOT = "expired_root"
    #: the registry's index lags the chain too far to judge a root (fail closed, HTTP 503)
    INDEX_STALE = "index_stale"
    INVALID_PROOF = "invalid_proof"
    NULLIFIER_REUSED = "nullifier_reused"


class RootStatus(str, Enum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    #: the oracle's view of the chain is too old to answer (registry/service/facade.py)
    STALE = "stale"


@dataclass(frozen=True)
class GroupPolicy:
    """Rate-limit parameters of one group (defaults documented in docs/authorization.md)."""

    group_id: int
    epoch_length: int = 600
    message_limit: int = 100
    clock_skew: int = 30
    #: a send group of this operator (docs/admission.md): listed by the operator and
    #: administered by its account; a group anyone else created on the contract is not
    served: bool = True

    def __post_init__(self) -> None:
        check_epoch_parameters(self.epoch_length, self.clock_skew)  # skew < epoch_length / 2


@dataclass(frozen=True)
class Decision:
    authorized: bool
    reason: Reason
    nullifier: int | None = None
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "authorized": self.authorized,
            "reason": self.reason.value,
            "nullifier": None if self.nullifier is None else str(self.nullifier),
            "epoch": self.epoch,
        }


# ---------------------------------------------------------------- request validation
#
# One validation of an authorization request, used by both paths: the registry's
# POST /v1/authorize (its schema, registry/web/app.py, applies the same rules first) and a
# relay checking locally; both reach :meth:`Authorizer.authorize`, which applies them.


def parse_group_id(value: object) -> int | None:
    """A group id: a JSON integer in ``[0, MAX_GROUP_ID]`` (2^53 - 1), else None."""
    return bounded_int(json_integer(value), 0, MAX_GROUP_ID)


def parse_proof(value: SemaphoreProof | Mapping[str, Any] | str) -> SemaphoreProof:
    """The ``SemaphoreProof`` of a request: an object, its JSON object, or JSON text
    (parsed strictly). ``merkleTreeDepth`` is a JSON integer (``17.0`` is ``17``).
    Raises ``ValueError`` (a ``ProofError``) for anything else."""
    if isinstance(value, SemaphoreProof):
        return value
    if isinstance(value, str):
        try:
            value = strict_json.loads(value)
        except strict_json.JsonInputError as exc:
            raise ProofError(f"invalid Semaphore proof JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ProofError("a Semaphore proof is a JSON object")
    data = dict(value)
    depth = json_integer(data.get("merkleTreeDepth"))
    if depth is not None:
        data["merkleTreeDepth"] = depth
    return SemaphoreProof.from_dict(data)


class RootOracle(Protocol):
    def root_status(self, group_id: int, root: int, now: float) -> RootStatus: ...


class NullifierStore(Protocol):
    def claim(self, group_id: int, nullifier: int, epoch: int) -> bool:
        """Record the nullifier atomically; False if it was already recorded."""
        ...

    def purge(self, group_id: int, before_epoch: int) -> int: ...


class MemoryNullifierStore:
    """A thread-safe in-memory store (a relay's own store, tests, the demo)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def claim(self, group_id: int, nullifier: int, epoch: int) -> bool:
        with self._lock:
            key = (group_id, nullifier)
            if key in self._seen:
                return False
            self._seen[key] = epoch
            return True

    def purge(self, group_id: int, before_epoch: int) -> int:
        with self._lock:
            old = [k for k, e in self._seen.items() if k[0] == group_id and e < before_epoch]
            for k in old:
                del self._seen[k]
            return len(old)


#: The nullifier store's schema steps (:mod:`registry.storage.migrations`).
NULLIFIER_MIGRATIONS = (
    Migration(
        1,
        (
            "CREATE TABLE IF NOT EXISTS nullifiers ("
            " group_id INTEGER NOT NULL, nullifier TEXT NOT NULL, epoch INTEGER NOT NULL,"
            " PRIMARY KEY (group_id, nullifier)) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS nullifiers_epoch ON nullifiers (group_id, epoch)",
        ),
    ),
    # The relay that claimed a nullifier at its home registry (POST /v1/nullifiers/claim):
    # its retry is answered "claimed" again. NULL for /v1/authorize and a relay's own claims.
    Migration(2, ("ALTER TABLE nullifiers ADD COLUMN claimer TEXT",)),
)


class SqlNullifierStore(DatabaseStore):
    """Nullifiers in SQL (an SQLite file, or a PostgreSQL schema shared by every replica
    and relay of a deployment): the primary key makes the claim one atomic, durable insert,
    ``INSERT ... ON CONFLICT DO NOTHING`` in autocommit; the one that inserted the row (row
    count 1) won, so exactly one of any number of concurrent claimers wins, across
    processes and machines. No lock and no read before the insert; nothing in memory.
    On SQLite, concurrent claims of one process share a durable commit (group commit).

    ``store`` is a path (an SQLite file) or a :class:`Database`. The database being
    unreachable raises :class:`sqlite3.OperationalError` (after the pool's timeout on
    PostgreSQL), never a False: a claim that was not recorded is not an answer.
    """

    def __init__(self, store: Path | str | Database) -> None:
        self._db = store if isinstance(store, Database) else SqliteDatabase(store, durable=True)
        migrate(self._db, NULLIFIER_MIGRATIONS)
        # SQLite: concurrent claims share one durable commit (registry/service/group_commit.py),
        # each answered only once its commit is on disk. PostgreSQL: one autocommit each.
        self._group = GroupCommit(self._db.raw) if isinstance(self._db, SqliteDatabase) else None


    def _insert(self, sql: str, params: tuple[Any, ...]) -> bool:
        """One claim's insert, durable before this returns: whether it inserted the row."""
        if self._group is None:
            return int(self._execute(sql, params).rowcount) == 1
        return self._group.run(lambda conn: int(conn.execute(sql, params).rowcount) == 1)

    def claim(self, group_id: int, nullifier: int, epoch: int) -> bool:
        return self._insert(
            "INSERT INTO nullifiers (group_id, nullifier, epoch) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (group_id, str(nullifier), epoch),
        )

    def claim_as(self, group_id: int, nullifier: int, epoch: int, claimer: str) -> bool:
        """Claim for ``claimer`` (a relay address), idempotently: True if this call
        recorded it, or ``claimer`` recorded the same (group, nullifier, epoch) before; False
        if anyone else did (another relay, ``POST /v1/authorize``)."""
        if self._insert(
            "INSERT INTO nullifiers (group_id, nullifier, epoch, claimer) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (group_id, str(nullifier), epoch, claimer),
        ):
            return True
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT epoch, claimer FROM nullifiers WHERE group_id = ? AND nullifier = ?", (group_id, str(nullifier))
            ).fetchone()
        return row is not None and int(row[0]) == epoch and row[1] == claimer

    def release(self, group_id: int, nullifier: int, epoch: int) -> bool:
        """Undo a claim whose send was not completed (a relay that could not store the blob
        after claiming). Only the claimer may call it: it makes the nullifier usable again."""
        cur = self._execute(
            "DELETE FROM nullifiers WHERE group_id = ? AND nullifier = ? AND epoch = ?",
            (group_id, str(nullifier), epoch),
        )
        return int(cur.rowcount) == 1

    def purge(self, group_id: int, before_epoch: int) -> int:
        cur = self._execute("DELETE FROM nullifiers WHERE group_id = ? AND epoch < ?", (group_id, before_epoch))
        return int(cur.rowcount)

    def count(self) -> int:
        with self._db.connection() as conn:
            row = conn.execute("SELECT count(*) FROM nullifiers").fetchone()
        return int(row[0])


#: The name the relay and older callers use (an SQLite path still works).
SqliteNullifierStore = SqlNullifierStore


class Authorizer:
    """Runs the checks in the documented order; cheap ones first, the pairing late, and
    the nullifier is claimed only after the proof verifies (junk never burns a slot)."""

    def __init__(
        self,
        policies: Callable[[int], GroupPolicy | None] | Mapping[int, GroupPolicy],
        roots: RootOracle,
        nullifiers: NullifierStore,
        verify: Callable[[SemaphoreProof], bool] = verify_proof,
        clock: Callable[[], float] = time.time,
        *,
        registry: RegistryRef,
    ) -> None:
        """``registry``: the deployment whose groups these are; a scope must carry its tag."""
        self._registry_tag = registry.tag
        if isinstance(policies, Mapping):
            table = dict(policies)
            self._policy: Callable[[int], GroupPolicy | None] = table.get
        else:
            self._policy = policies
        self._roots = roots
        self._nullifiers = nullifiers
        self._verify = verify
        self._clock = clock

    def authorize(
        self,
        proof: SemaphoreProof | Mapping[str, Any] | str,
        group_id: int,
        blob_digest: bytes,
    ) -> Decision:
        try:
            proof = parse_proof(proof)
            expected_message = blob_message(blob_digest)
        except (ValueError, TypeError):
            return Decision(False, Reason.MALFORMED)
        checked_group = parse_group_id(group_id)
        if checked_group is None:  # what the registry's schema refuses (422 malformed)
            return Decision(False, Reason.MALFORMED)
        group_id = checked_group
        policy = self._policy(group_id)
        if policy is None:
            return Decision(False, Reason.UNKNOWN_GROUP)
        if not policy.served:
            return Decision(False, Reason.GROUP_NOT_SERVED)
        try:
            scope = decode_scope(proof.scope)
        except ScopeVersionError:
            return Decision(False, Reason.SCOPE_VERSION_UNSUPPORTED)
        except ScopeError:
            return Decision(False, Reason.BAD_SCOPE)
        if scope.registry_tag != self._registry_tag:
            return Decision(False, Reason.WRONG_REGISTRY, epoch=scope.epoch)
        if scope.group_id != group_id:
            return Decision(False, Reason.WRONG_GROUP, epoch=scope.epoch)
        now = self._clock()
        if scope.epoch not in acceptable_epochs(now, policy.epoch_length, policy.clock_skew):
            return Decision(False, Reason.WRONG_EPOCH, epoch=scope.epoch)
        if scope.slot >= policy.message_limit:
            return Decision(False, Reason.SLOT_OUT_OF_RANGE, epoch=scope.epoch)
        if proof.message != expected_message:
            return Decision(False, Reason.MESSAGE_MISMATCH, epoch=scope.epoch)
        status = self._roots.root_status(group_id, proof.merkle_tree_root, now)
        if status is RootStatus.UNKNOWN:
            return Decision(False, Reason.UNKNOWN_ROOT, epoch=scope.epoch)
        if status is RootStatus.EXPIRED:
            return Decision(False, Reason.EXPIRED_ROOT, epoch=scope.epoch)
        if status is not RootStatus.VALID:  # STALE, or anything new: fail closed
            return Decision(False, Reason.INDEX_STALE, epoch=scope.epoch)
        if not self._verify(proof):
            return Decision(False, Reason.INVALID_PROOF, epoch=scope.epoch)
        if not self._nullifiers.claim(group_id, proof.nullifier, scope.epoch):
            return Decision(False, Reason.NULLIFIER_REUSED, proof.nullifier, scope.epoch)
        return Decision(True, Reason.OK, proof.nullifier, scope.epoch)


class StaticRoots:
    """Roots known in memory with their superseded-at times (the demo, tests, a relay cache)."""

    def __init__(self, window: float = 3600.0) -> None:
        self.window = window
        self._roots: dict[tuple[int, int], float | None] = {}
        self._current: dict[int, int] = {}

    def set_current(self, group_id: int, root: int, now: float) -> None:
        previous = self._current.get(group_id)
        if previous is not None and previous != root:
            self._roots[(group_id, previous)] = now
        self._current[group_id] = root
        self._roots[(group_id, root)] = None

    def root_status(self, group_id: int, root: int, now: float) -> RootStatus:
        key = (group_id, root)
        if key not in self._roots:
            return RootStatus.UNKNOWN
        superseded = self._roots[key]
        if superseded is None or now - superseded <= self.window:
            return RootStatus.VALID
        return RootStatus.EXPIRED
