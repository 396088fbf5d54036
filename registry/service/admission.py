"""Admission policies per group: who may register a commitment (docs/admission.md).

Each group this registry serves has one record in ``admission.sqlite``, set by the
operator (``POST /v1/groups``, ``PUT /v1/groups/{id}/admission``):

- ``zk``: anonymous admission. The client proves, with a Semaphore v4 proof, membership
  in the group's *admission group* (one commitment per checked person, written by the
  operator), over ``message = C`` (the commitment it registers) and the admission scope
  of :mod:`zk.admission_scope` (group, round). Checked like a send authorization
  (``docs/authorization.md``): scope, message, root of the admission group valid now,
  the Groth16 proof, then the nullifier claimed (one registration per credential per round);
- ``invite``: a single-use code minted by the operator; only its SHA-256 is stored;
- ``open``: anyone (bounded by the per-IP limits of the HTTP layer);
- ``closed``: only the operator (its token) registers: an admission group.

The record also says whether the group is a *send group* (``send``): only those get send
authorizations (docs/admission.md). A group without a record is not served at all.

The credential is claimed here and the registration enqueued in the outbox right after;
the caller releases the claim when the enqueue is refused (:meth:`AdmissionStore.release_nullifier`,
:meth:`AdmissionStore.release_invite`), so a refused registration never burns a credential.
Nothing here logs a commitment, proof, nullifier or invite code.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.service.authorization import RootOracle, RootStatus, parse_proof
from registry._utils.integers import MAX_GROUP_ID, UINT64_MAX
from registry.service.outbox import RegistryError, check_int
from registry.storage.database import Database, DatabaseStore, SqliteDatabase
from registry.storage.migrations import Migration, migrate
from zk.admission_scope import AdmissionScopeError, AdmissionScopeVersionError, decode_admission_scope
from zk.proof import SemaphoreProof, verify_proof
from zk.scope_layout import RegistryRef

FILE_NAME = "admission.sqlite"
#: Tables the start-up check requires (registry/storage/sqlite.py).
TABLES = ("group_admission", "admission_nullifiers", "invites")
POLICIES = ("zk", "invite", "open", "closed")
#: Most invite codes minted by one request.
MAX_INVITES_PER_CALL = 1000
INVITE_PREFIX = "zki_"

ADMISSION_MESSAGES: dict[str, str] = {
    "group_not_served": "this registry does not serve this group (no admission policy set by its operator)",
    "admission_required": "this group's admission policy needs a credential (an admission proof or an invite code)",
    "admission_bad_scope": "the admission proof's scope is not an admission scope",
    "admission_scope_version_unsupported": "the admission proof's scope is LZA1; make it again over an LZA2 scope (docs/admission.md)",
    "admission_wrong_registry": "the admission proof's scope names another registry (chain id, registry contract)",
    "admission_wrong_group": "the admission proof's scope names another group",
    "admission_wrong_round": "the admission proof's scope names another admission round",
    "admission_message_mismatch": "the admission proof's message is not the registered commitment",
    "admission_unknown_root": "the admission proof's Merkle root was never a root of the admission group",
    "admission_expired_root": "the admission proof's Merkle root was superseded longer ago than the admission group's window",
    "admission_invalid_proof": "the admission proof does not verify",
    "index_stale": "the registry's chain index lags the ledger too far to judge the admission proof's root; try again later",
    "admission_group_not_closed": "an admission group must have the policy closed and not be a send group",
    "admission_group_in_use": "this group is the admission group of a zk group: it stays closed and not a send group",
    "admission_used": "this admission credential already registered a commitment in this group and round",
    "invite_invalid": "unknown invite code for this group",
    "invite_used": "this invite code was already used",
    "invite_expired": "this invite code has expired",
}


def refusal(code: str, detail: str | None = None) -> RegistryError:
    """The :class:`RegistryError` of an admission refusal (its status from ``registry.errors.STATUS``)."""
    message = ADMISSION_MESSAGES[code] if detail is None else f"{ADMISSION_MESSAGES[code]}: {detail}"
    return RegistryError(code, message)


@dataclass(frozen=True)
class GroupAdmission:
    """One group's admission record (docs/admission.md)."""

    group_id: int
    policy: str
    admission_group: int | None = None
    round: int = 0
    send: bool = True

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise RegistryError("malformed", f"policy must be one of {', '.join(POLICIES)}")
        check_int(self.round, "round", UINT64_MAX)
        if self.admission_group is not None:
            check_int(self.admission_group, "admission_group", MAX_GROUP_ID)
            if self.admission_group == self.group_id:
                raise RegistryError("malformed", "a group cannot be its own admission group")
        if self.policy == "zk" and self.admission_group is None:
            raise RegistryError("malformed", "policy zk needs admission_group (the group of checked persons)")
        if self.policy != "zk" and self.admission_group is not None:
            raise RegistryError("malformed", "admission_group is only for policy zk")
        if not isinstance(self.send, bool):
            raise RegistryError("malformed", "send must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "admission_group": self.admission_group,
            "round": self.round,
            "send": self.send,
        }


def admission_from_json(group_id: int, data: Mapping[str, Any]) -> GroupAdmission:
    """A record from the API's ``admission`` object; ``send`` defaults to false for ``closed``
    groups (admission groups) and true otherwise."""
    policy = data.get("policy", "zk")
    send = data.get("send")
    return GroupAdmission(
        group_id=group_id,
        policy=policy,
        admission_group=data.get("admission_group"),
        round=data.get("round", 0),
        send=(policy != "closed") if send is None else send,
    )


def hash_invite(code: str) -> str:
    """How an invite is stored: SHA-256 of the code (128 random bits: no slow hash needed)."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


_SCHEMA_1 = (
    "CREATE TABLE IF NOT EXISTS group_admission ("
    " group_id INTEGER PRIMARY KEY, policy TEXT NOT NULL, admission_group INTEGER,"
    " round INTEGER NOT NULL, send INTEGER NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS admission_nullifiers ("
    " group_id INTEGER NOT NULL, round TEXT NOT NULL, nullifier TEXT NOT NULL,"
    " PRIMARY KEY (group_id, round, nullifier)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS invites ("
    " code_hash TEXT PRIMARY KEY, group_id INTEGER NOT NULL, expires_at REAL NOT NULL,"
    " created_at REAL NOT NULL, used_at REAL) WITHOUT ROWID",
)
#: The store's schema steps (:mod:`registry.storage.migrations`). 2: a group's ``round``
#: (up to 2^64 - 1) as TEXT: in an INTEGER column SQLite turned a round above 2^63 - 1 into
#: an inexact REAL and PostgreSQL (BIGINT) refuses it.
MIGRATIONS = (
    Migration(1, _SCHEMA_1),
    Migration(
        2,
        (
            "CREATE TABLE group_admission_v2 ("
            " group_id INTEGER PRIMARY KEY, policy TEXT NOT NULL, admission_group INTEGER,"
            " round TEXT NOT NULL, send INTEGER NOT NULL, updated_at REAL NOT NULL)",
            "INSERT INTO group_admission_v2 (group_id, policy, admission_group, round, send, updated_at)"
            " SELECT group_id, policy, admission_group, CAST(round AS TEXT), send, updated_at FROM group_admission",
            "DROP TABLE group_admission",
            "ALTER TABLE group_admission_v2 RENAME TO group_admission",
        ),
    ),
)


class AdmissionStore(DatabaseStore):
    """``admission.sqlite`` (or the PostgreSQL schema ``zkid_admission``, shared by every
    replica): group records, admission nullifiers and invite hashes (durable).

    ``store`` is a path (an SQLite file) or a :class:`Database`. No credential is kept in
    memory: every claim is one atomic statement (an insert that a primary key makes win
    once, an update guarded by ``used_at IS NULL``), so exactly one replica wins a race for
    a credential. Group records are cached on SQLite only (one process; :meth:`get`)."""

    def __init__(self, store: Path | str | Database, clock: Callable[[], float] = time.time) -> None:
        self._db = store if isinstance(store, Database) else SqliteDatabase(store, durable=True)
        self._clock = clock
        # SQLite: writers of this process queue here, not in SQLite's busy handler.
        self._lock: AbstractContextManager[Any] = threading.Lock() if isinstance(self._db, SqliteDatabase) else nullcontext()
        # Group records read on every registration and authorization (get): SQLite only.
        self._cache: dict[int, GroupAdmission | None] | None = {} if isinstance(self._db, SqliteDatabase) else None
        self._cache_lock = threading.Lock()
        self._generation = 0
        migrate(self._db, MIGRATIONS)


    # ------------------------------------------------------------ group records

    def get(self, group_id: int) -> GroupAdmission | None:
        """The group's record. SQLite (one process writes the file): kept in memory once
        read, dropped by every :meth:`put`; PostgreSQL (replicas write it): read each time."""
        if self._cache is None:
            return self._read_record(group_id)
        with self._cache_lock:
            if group_id in self._cache:
                return self._cache[group_id]
            generation = self._generation
        record = self._read_record(group_id)
        with self._cache_lock:
            if generation == self._generation:  # no put since the read began: not stale
                self._cache[group_id] = record
        return record

    def _read_record(self, group_id: int) -> GroupAdmission | None:
        row = self._one(
            "SELECT group_id, policy, admission_group, round, send FROM group_admission WHERE group_id = ?", (group_id,)
        )
        if row is None:
            return None
        return GroupAdmission(int(row[0]), str(row[1]), None if row[2] is None else int(row[2]), _round(row[3]), bool(row[4]))

    def _forget(self) -> None:
        if self._cache is not None:
            with self._cache_lock:
                self._generation += 1
                self._cache.clear()

    def put(self, record: GroupAdmission) -> None:
        self._forget()
        try:
            self._put(record)
        finally:
            self._forget()

    def _put(self, record: GroupAdmission) -> None:
        # round up to 2^64 - 1 does not fit a signed 64-bit INTEGER: stored as text.
        self._execute(
            "INSERT INTO group_admission (group_id, policy, admission_group, round, send, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET policy = excluded.policy,"
            " admission_group = excluded.admission_group, round = excluded.round, send = excluded.send,"
            " updated_at = excluded.updated_at",
            (record.group_id, record.policy, record.admission_group, str(record.round), int(record.send), self._clock()),
        )

    def put_if_absent(self, record: GroupAdmission) -> GroupAdmission:
        """Record ``record`` unless the group has one; return the group's record."""
        self._forget()
        try:
            self._execute(
                "INSERT INTO group_admission (group_id, policy, admission_group, round, send, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (record.group_id, record.policy, record.admission_group, str(record.round), int(record.send), self._clock()),
            )
        finally:
            self._forget()
        current = self.get(record.group_id)
        assert current is not None
        return current

    def records(self) -> list[GroupAdmission]:
        with self._db.connection() as conn:
            rows = conn.execute("SELECT group_id FROM group_admission ORDER BY group_id").fetchall()
        return [r for r in (self.get(int(row[0])) for row in rows) if r is not None]

    # ------------------------------------------------------------ zk credentials

    def claim_nullifier(self, group_id: int, round_: int, nullifier: int) -> bool:
        """Record an admission nullifier atomically; False if it was already recorded."""
        cur = self._execute(
            "INSERT INTO admission_nullifiers (group_id, round, nullifier) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (group_id, str(round_), str(nullifier)),
        )
        return int(cur.rowcount) == 1

    def release_nullifier(self, group_id: int, round_: int, nullifier: int) -> None:
        """Undo a claim whose registration the outbox refused (only the claimer calls it)."""
        self._execute(
            "DELETE FROM admission_nullifiers WHERE group_id = ? AND round = ? AND nullifier = ?",
            (group_id, str(round_), str(nullifier)),
        )

    def nullifier_count(self) -> int:
        return int(self._one("SELECT count(*) FROM admission_nullifiers")[0])

    # ------------------------------------------------------------ invites

    def create_invites(self, group_id: int, count: int, expires_at: float) -> list[str]:
        """Mint ``count`` single-use codes for ``group_id``; only their hashes are stored."""
        check_int(count, "count", MAX_INVITES_PER_CALL, low=1)
        now = self._clock()
        if expires_at <= now:
            raise RegistryError("malformed", "expires_at must be in the future")
        codes = [INVITE_PREFIX + secrets.token_hex(16) for _ in range(count)]
        # All or none; random codes under a primary key: no serialisation across replicas needed.
        with self._lock, self._db.transaction(serialize=False) as conn:
            conn.executemany(
                "INSERT INTO invites (code_hash, group_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
                [(hash_invite(c), group_id, float(expires_at), now) for c in codes],
            )
        return codes

    def claim_invite(self, group_id: int, code: str) -> str:
        """Mark the invite used; return its hash (for :meth:`release_invite`). Raises the
        refusal ``invite_invalid`` / ``invite_used`` / ``invite_expired``."""
        digest = hash_invite(code)
        now = self._clock()
        # The hour only (docs/privacy.md): a use time to the second would join the invite
        # to the connection log and to the registration it admitted.
        cur = self._execute(
            "UPDATE invites SET used_at = ? WHERE code_hash = ? AND group_id = ? AND used_at IS NULL AND expires_at > ?",
            (float(int(now) // 3600 * 3600), digest, group_id, now),
        )
        if int(cur.rowcount) == 1:
            return digest
        row = self._one("SELECT group_id, expires_at, used_at FROM invites WHERE code_hash = ?", (digest,))
        if row is None or int(row[0]) != group_id:
            raise refusal("invite_invalid")
        if row[2] is not None:
            raise refusal("invite_used")
        raise refusal("invite_expired")

    def release_invite(self, code_hash: str) -> None:
        self._execute("UPDATE invites SET used_at = NULL WHERE code_hash = ?", (code_hash,))

    def invite_count(self, group_id: int) -> int:
        return int(self._one("SELECT count(*) FROM invites WHERE group_id = ?", (group_id,))[0])


def _round(value: object) -> int:
    """A stored round: decimal text (schema 2). A round above 2^63 - 1 that schema 1 kept
    in SQLite as an inexact REAL reads as the nearest integer, as it did before."""
    text = str(value)
    return int(text) if text.isdigit() else int(float(text))


class ZkAdmission:
    """The ``zk`` policy's checks, in order (docs/admission.md); the cheap ones first,
    the pairing late, the nullifier claimed last (a bad proof never burns a credential)."""

    def __init__(
        self,
        store: AdmissionStore,
        roots: RootOracle,
        verify: Callable[[SemaphoreProof], bool] = verify_proof,
        clock: Callable[[], float] = time.time,
        *,
        registry: RegistryRef,
    ) -> None:
        """``registry``: this registry's deployment; admission scopes must carry its tag."""
        self._registry_tag = registry.tag
        self._store = store
        self._roots = roots
        self._verify = verify
        self._clock = clock

    def claim(self, record: GroupAdmission, commitment: int, proof: SemaphoreProof | Mapping[str, Any] | str) -> int:
        """Check an admission proof for registering ``commitment`` in ``record``'s group and
        claim its nullifier; return the nullifier. Raises the refusal."""
        assert record.policy == "zk" and record.admission_group is not None
        try:
            parsed = parse_proof(proof)
        except (ValueError, TypeError):
            raise RegistryError("malformed", "admission_proof is not a well-formed Semaphore proof", 422) from None
        try:
            scope = decode_admission_scope(parsed.scope)
        except AdmissionScopeVersionError:
            raise refusal("admission_scope_version_unsupported") from None
        except AdmissionScopeError:
            raise refusal("admission_bad_scope") from None
        if scope.registry_tag != self._registry_tag:
            raise refusal("admission_wrong_registry")
        if scope.group_id != record.group_id:
            raise refusal("admission_wrong_group")
        if scope.round != record.round:
            raise refusal("admission_wrong_round", f"the group's round is {record.round}")
        if parsed.message != commitment:
            raise refusal("admission_message_mismatch")
        status = self._roots.root_status(record.admission_group, parsed.merkle_tree_root, self._clock())
        if status is RootStatus.UNKNOWN:
            raise refusal("admission_unknown_root")
        if status is RootStatus.EXPIRED:
            raise refusal("admission_expired_root")
        if status is not RootStatus.VALID:  # STALE (the index lags), or anything new: fail closed
            raise refusal("index_stale")
        if not self._verify(parsed):
            raise refusal("admission_invalid_proof")
        if not self._store.claim_nullifier(record.group_id, record.round, parsed.nullifier):
            raise refusal("admission_used")
        return parsed.nullifier
