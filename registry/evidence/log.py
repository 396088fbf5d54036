"""The registry's delivery-evidence log: an append-only RFC 9162 tree in SQLite or PostgreSQL.

- One entry per signed evidence record (``docs/evidence.md``): the entry is the 32-byte
  EIP-712 record hash, the leaf ``SHA-256(0x00 || record_hash)``.
- Complete subtree hashes are memoised at append time in ``nodes(level, idx, hash)``
  (level 0 = leaf hashes), as :func:`zk.evidence.merkle.nodes_completed_by_append`
  describes, so the log is a :class:`zk.evidence.merkle.TreeReader` whose proofs cost
  ``O(log n)`` indexed reads.
- SQLite in WAL mode with ``synchronous=FULL``, or the ``zkid_evidence`` schema of a
  shared PostgreSQL database (:mod:`registry.storage.database`): an append returns only
  after its transaction is committed (durable across a crash or power loss). Appends are
  serialised across replicas, so indices stay sequential and unique (:class:`EvidenceLog`).
- Checkpoints are C2SP signed notes (:mod:`zk.evidence.note`) by the log key; the key is
  named after the origin (default ``letro-zkid/<region>/evidence``) and kept in
  ``<data_dir>/log.key`` (created on first start, mode 0600).
- The ``anchors`` table records where each checkpoint was anchored on the ledger
  (filled by :mod:`registry.evidence.anchorer`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.storage.database import Database, SqliteDatabase
from registry.storage.migrations import Migration, migrate
from zk.evidence import merkle
from zk.evidence.note import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from zk.evidence.proof_format import TlogProof
from zk.evidence.record import RecordError, SignedRecord, record_hash, recover_issuer

LOG_KEY_FILE = "log.key"
#: ``entries.appended_at`` is the start of the UTC hour of the append (docs/privacy.md).
APPENDED_AT_RESOLUTION = 3600
ORIGIN_TEMPLATE = "letro-zkid/{region}/evidence"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY, record_hash BLOB NOT NULL UNIQUE,
    record_json TEXT NOT NULL, appended_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS anchors (
    tree_size INTEGER PRIMARY KEY, root_hash BLOB NOT NULL, chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL, tx_hash BLOB NOT NULL, block_number INTEGER NOT NULL,
    block_time INTEGER NOT NULL, recorded_at REAL NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS relay_keys (address TEXT PRIMARY KEY, added_at INTEGER NOT NULL)",
)
#: Versioned schema (registry/storage/migrations.py); step 1 is the layout above.
MIGRATIONS = (Migration(1, _SCHEMA),)


class EvidenceLogError(ValueError):
    """A refused append or lookup; ``code`` is a stable machine-readable reason."""

    code = "evidence_log_error"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.code}: {detail}")
        self.detail = detail


class MalformedRecord(EvidenceLogError):
    code = "malformed_record"


class BadSignature(EvidenceLogError):
    code = "bad_signature"


class EntryNotFound(EvidenceLogError):
    code = "not_found"


def default_origin(region: str) -> str:
    """The default log origin (and key name) of a region's evidence log."""
    return ORIGIN_TEMPLATE.format(region=region)


def load_or_create_log_key(data_dir: Path | str, origin: str) -> NoteSigner:
    """The log's signer key from ``data_dir/log.key``; created (mode 0600) if absent.

    Refuses a stored key named differently from ``origin`` (checkpoints must be signed
    by a key named after their origin)."""
    path = Path(data_dir) / LOG_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        signer = NoteSigner.generate(origin)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created concurrently: read it below
        else:
            with os.fdopen(fd, "w") as f:
                f.write(signer.skey() + "\n")
                f.flush()
                os.fsync(f.fileno())
            return signer
    signer = NoteSigner.from_skey(path.read_text().strip())
    if signer.name != origin:
        raise ValueError(
            f"{path} holds the key of {signer.name!r}, not of {origin!r}: a log's origin (which names the "
            "region) is fixed for its data directory; start with the region it was created with, or a new data directory"
        )
    return signer


@dataclass(frozen=True)
class StoredEntry:
    index: int
    evidence_id: str
    signed: SignedRecord
    appended_at: int


@dataclass(frozen=True)
class StoredAnchor:
    tree_size: int
    root_hash: bytes
    chain_id: int
    contract: str
    tx_hash: bytes
    block_number: int
    block_time: int
    recorded_at: float

    def to_dict(self) -> dict[str, object]:
        return {
            "treeSize": self.tree_size,
            "rootHash": "0x" + self.root_hash.hex(),
            "chainId": self.chain_id,
            "contract": self.contract,
            "txHash": "0x" + self.tx_hash.hex(),
            "blockNumber": self.block_number,
            "blockTime": self.block_time,
        }


#: (record hash, signature) pairs that verified recently. The admission checks
#: (registry/evidence/admission.py) verify a record just before the log appends it: the
#: pair determines the outcome (the issuer is inside the hash), so the second secp256k1
#: recovery can be skipped. Bounded; only successes are kept.
_VERIFIED_CACHE_SIZE = 8192
_verified: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
_verified_lock = threading.Lock()


def check_records(records: Sequence[SignedRecord]) -> list[bytes]:
    """:func:`verified_hash` of each record; the error of the first bad one names its
    position when there are several."""
    hashes: list[bytes] = []
    for i, signed in enumerate(records):
        try:
            hashes.append(verified_hash(signed))
        except EvidenceLogError as exc:
            raise type(exc)(f"record {i}: {exc.detail}" if len(records) > 1 else exc.detail) from None
    return hashes


def verified_hash(signed: object) -> bytes:
    """The record hash of a signed record whose signature recovers to its issuer
    (raises :class:`MalformedRecord` or :class:`BadSignature`)."""
    if not isinstance(signed, SignedRecord):
        raise MalformedRecord("expected a SignedRecord")
    record_hash_ = record_hash(signed.record)
    key = (record_hash_, bytes(signed.signature))
    with _verified_lock:
        if key in _verified:
            _verified.move_to_end(key)
            return record_hash_
    try:
        ok = recover_issuer(record_hash_, signed.signature) == signed.record.issuer
    except RecordError as exc:
        raise BadSignature(str(exc)) from None
    if not ok:
        raise BadSignature("the signature does not recover to the record's issuer")
    with _verified_lock:
        _verified[key] = None
        while len(_verified) > _VERIFIED_CACHE_SIZE:
            _verified.popitem(last=False)
    return record_hash_


class EvidenceLog:
    """See the module docstring. Thread-safe; ``database`` is a
    :class:`registry.storage.database.Database` or the path of an SQLite file.

    Replicas (docs/deployment.md): any number of processes may append to one PostgreSQL
    log. An append reads the log's size (and, when another writer moved it, the right
    frontier) inside its serialised transaction, so indices stay sequential and unique
    across replicas. Per process: ``_size`` (a lower bound, entries are never removed:
    :attr:`size` re-reads it) and the frontier of this process's last append.
    """

    def __init__(self, database: Path | str | Database, signer: NoteSigner, origin: str) -> None:
        if signer.name != origin:
            raise ValueError(f"the log key is named {signer.name!r}, the origin is {origin!r}")
        if isinstance(database, Database):
            self._db: Database = database
        else:
            self._db = SqliteDatabase(database, durable=True)
        self.path: Path | None = self._db.path if isinstance(self._db, SqliteDatabase) else None
        self.signer = signer
        self.origin = origin
        self._lock = threading.RLock()
        migrate(self._db, MIGRATIONS)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='origin'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('origin', ?)", (origin,))
        if row is not None and row[0] != origin:
            self._db.close()
            raise ValueError(f"{self._db.describe} is the log of {row[0]!r}, not {origin!r}")
        with self._db.connection() as conn:
            self._size = self._read_size(conn)
        # The right frontier after this process's last append: the newest complete node of
        # each level (the only nodes an append needs as left siblings), valid for a log of
        # ``_frontier_size`` entries; any other size reads them from ``nodes``.
        self._frontier: dict[int, tuple[int, bytes]] = {}
        self._frontier_size = -1

    def close(self) -> None:
        with self._lock:
            self._db.close()  # SQLite: checkpointed, the main file alone is a full copy

    @property
    def database(self) -> Database:
        return self._db

    @property
    def verifier(self) -> NoteVerifier:
        return self.signer.verifier()

    @staticmethod
    def _read_size(conn: Any) -> int:
        # Indices are 0..size-1 without gaps (appends are serialised): max + 1 is the size,
        # one index lookup where COUNT(*) would scan.
        return int(conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0])

    # --- TreeReader ------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of entries now (read from the database: another replica may have
        appended)."""
        with self._db.connection() as conn:
            size = self._read_size(conn)
        with self._lock:
            self._size = max(self._size, size)
            return self._size

    def leaf_hash(self, index: int) -> bytes:
        return self.subtree_hash(index, 0)

    def subtree_hash(self, start: int, level: int) -> bytes:
        width = 1 << level
        if level < 0 or start < 0 or start % width or (start + width > self._size and start + width > self.size):
            raise merkle.ProofError("bad_subtree", f"[{start}, {start + width}) is not a complete subtree")
        with self._db.connection() as conn:
            row = conn.execute("SELECT hash FROM nodes WHERE level=? AND idx=?", (level, start >> level)).fetchone()
        if row is None:  # the append invariant is broken: the store is damaged
            raise RuntimeError(f"evidence log node ({level}, {start >> level}) is missing")
        return bytes(row[0])

    # --- Appends ---------------------------------------------------------------------

    def append(self, signed: SignedRecord) -> tuple[int, str]:
        """Append one record (signature verified first); ``(index, evidence_id)``.

        A record already in the log returns its existing index (idempotent)."""
        return self.append_many([signed])[0]

    def append_many(self, records: Sequence[SignedRecord]) -> list[tuple[int, str]]:
        """Append records in one durable transaction; all or nothing.

        Every signature is verified before anything is written; a bad one refuses the
        whole batch (the error names its position)."""
        return [(index, eid) for index, eid, _ in self.append_detailed(records)]

    def append_detailed(
        self, records: Sequence[SignedRecord], *, verified: Sequence[bytes] | None = None
    ) -> list[tuple[int, str, bool]]:
        """:meth:`append_many`, also telling for each record whether it is new (False:
        it was already in the log, or earlier in the same batch).

        ``verified``: the records' hashes from :func:`check_records` (or
        :class:`registry.evidence.verify_workers.VerifyWorkers`), already checked: not
        checked again. Only pass what one of them returned for these very records."""
        if verified is None:
            hashes = check_records(records)
        else:
            if len(verified) != len(records):
                raise ValueError("one verified hash per record")
            hashes = list(verified)
        # The hour only (docs/privacy.md): an entry's index already orders it; the relay
        # shuffles its records before posting, so neither says when a blob moved.
        now = int(time.time()) // APPENDED_AT_RESOLUTION * APPENDED_AT_RESOLUTION
        with self._lock, self._db.transaction() as conn:
            # Serialised with every other writer of this log (BEGIN IMMEDIATE on SQLite, the
            # store's advisory lock on PostgreSQL): the size read here is the log's.
            size = self._read_size(conn)
            frontier = dict(self._frontier) if size == self._frontier_size else {}
            out, entry_rows, node_rows, size = self._plan(conn, records, hashes, now, size, frontier)
            if entry_rows:
                conn.executemany("INSERT INTO entries (idx, record_hash, record_json, appended_at) VALUES (?, ?, ?, ?)", entry_rows)
                conn.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", node_rows)
        # Committed (the block above raised otherwise).
        with self._lock:
            if size >= self._size:
                self._size = size
                self._frontier, self._frontier_size = frontier, size
        return out

    def _plan(
        self,
        conn: Any,
        records: Sequence[SignedRecord],
        hashes: Sequence[bytes],
        now: int,
        size: int,
        frontier: dict[int, tuple[int, bytes]],
    ) -> tuple[list[tuple[int, str, bool]], list[tuple[int, bytes, str, int]], list[tuple[int, int, bytes]], int]:
        """The rows appending ``records`` to a log of ``size`` entries writes (``frontier``
        is moved along); returns (result, entry rows, node rows, new size)."""
        out: list[tuple[int, str, bool]] = []
        seen: dict[bytes, int] = {}
        entry_rows: list[tuple[int, bytes, str, int]] = []
        node_rows: list[tuple[int, int, bytes]] = []
        for signed, rh in zip(records, hashes):
            existing = seen.get(rh)
            if existing is None:
                row = conn.execute("SELECT idx FROM entries WHERE record_hash=?", (rh,)).fetchone()
                existing = None if row is None else int(row[0])
            if existing is not None:
                out.append((existing, rh.hex(), False))
                continue
            index = size
            size += 1
            seen[rh] = index
            leaf = merkle.leaf_hash(rh)
            entry_rows.append((index, rh, signed.to_json(), now))
            node_rows.append((0, index, leaf))
            # Siblings are read from the frontier *before* it moves to this leaf.
            completed = merkle.nodes_completed_by_append(
                index, leaf, lambda lv, pos: self._frontier_node(conn, frontier, lv, pos)
            )
            frontier[0] = (index, leaf)
            for level, position, h in completed:
                node_rows.append((level, position, h))
                frontier[level] = (position, h)
            out.append((index, rh.hex(), True))
        return out, entry_rows, node_rows, size

    @staticmethod
    def _frontier_node(conn: Any, frontier: dict[int, tuple[int, bytes]], level: int, position: int) -> bytes:
        got = frontier.get(level)
        if got is not None and got[0] == position:
            return got[1]
        row = conn.execute("SELECT hash FROM nodes WHERE level=? AND idx=?", (level, position)).fetchone()
        if row is None:
            raise RuntimeError(f"evidence log node ({level}, {position}) is missing")
        return bytes(row[0])

    # --- Reads -----------------------------------------------------------------------

    def known_hashes(self, hashes: Collection[bytes]) -> set[bytes]:
        """Which of ``hashes`` (record hashes) are in the log already."""
        found: set[bytes] = set()
        with self._db.connection() as conn:
            for h in hashes:
                if conn.execute("SELECT 1 FROM entries WHERE record_hash=?", (h,)).fetchone() is not None:
                    found.add(h)
        return found

    def get(self, evidence_id: str) -> StoredEntry:
        """The entry of ``evidence_id`` (64 hex digits, optional 0x); raises EntryNotFound."""
        text = evidence_id.lower().removeprefix("0x") if isinstance(evidence_id, str) else ""
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise MalformedRecord("an evidence id is 64 hex digits")
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT idx, record_json, appended_at FROM entries WHERE record_hash=?", (bytes.fromhex(text),)
            ).fetchone()
        if row is None:
            raise EntryNotFound(f"no evidence {text}")
        return StoredEntry(int(row[0]), text, SignedRecord.from_json(row[1]), int(row[2]))

    def entry_at(self, index: int) -> StoredEntry:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT record_hash, record_json, appended_at FROM entries WHERE idx=?", (index,)
            ).fetchone()
        if row is None:
            raise EntryNotFound(f"no entry {index}")
        return StoredEntry(index, bytes(row[0]).hex(), SignedRecord.from_json(row[1]), int(row[2]))

    def root(self, size: int | None = None) -> bytes:
        return merkle.root_hash(self, size)

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint note of the tree at ``size`` (default: now); cached per size."""
        n = self.size if size is None else size
        with self._db.connection() as conn:
            row = conn.execute("SELECT note FROM checkpoints WHERE size=?", (n,)).fetchone()
            if row is not None:
                return str(row[0])
            note = sign_checkpoint(Checkpoint(self.origin, n, merkle.root_hash(self, n)), [self.signer])
            conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?) ON CONFLICT (size) DO NOTHING", (n, note))
        return note

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        return merkle.inclusion_proof(self, index, size)

    def tlog_proof(self, index: int, size: int | None = None) -> TlogProof:
        """The C2SP tlog-proof of entry ``index`` against the signed checkpoint at ``size``."""
        n = self.size if size is None else size
        return TlogProof(index, tuple(self.inclusion(index, n)), self.checkpoint(n))

    def consistency(self, size1: int, size2: int | None = None) -> list[bytes]:
        return merkle.consistency_proof(self, size1, size2)

    # --- Anchors ---------------------------------------------------------------------

    def record_anchor(self, anchor: StoredAnchor) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO anchors (tree_size, root_hash, chain_id, contract, tx_hash, block_number, block_time,"
                " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tree_size) DO UPDATE SET"
                " root_hash = excluded.root_hash, chain_id = excluded.chain_id, contract = excluded.contract,"
                " tx_hash = excluded.tx_hash, block_number = excluded.block_number,"
                " block_time = excluded.block_time, recorded_at = excluded.recorded_at",
                (anchor.tree_size, anchor.root_hash, anchor.chain_id, anchor.contract, anchor.tx_hash,
                 anchor.block_number, anchor.block_time, anchor.recorded_at),
            )

    def _anchor_row(self, sql: str, args: tuple[int, ...] = ()) -> StoredAnchor | None:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT tree_size, root_hash, chain_id, contract, tx_hash, block_number, block_time, recorded_at"
                " FROM anchors " + sql,
                args,
            ).fetchone()
        if row is None:
            return None
        return StoredAnchor(int(row[0]), bytes(row[1]), int(row[2]), str(row[3]), bytes(row[4]),
                            int(row[5]), int(row[6]), float(row[7]))

    def latest_anchor(self) -> StoredAnchor | None:
        return self._anchor_row("ORDER BY tree_size DESC LIMIT 1")

    # --- Relay keys added by the operator (registry/evidence/admission.py) --------------

    def relay_keys(self) -> list[str]:
        with self._db.connection() as conn:
            return [str(r[0]) for r in conn.execute("SELECT address FROM relay_keys ORDER BY address").fetchall()]

    def add_relay_key(self, address: str) -> bool:
        """Store an (EIP-55) relay address; False if it was stored already."""
        with self._db.connection() as conn:
            cur = conn.execute(
                "INSERT INTO relay_keys (address, added_at) VALUES (?, ?) ON CONFLICT (address) DO NOTHING",
                (address, int(time.time())),
            )
            return int(cur.rowcount) > 0

    def remove_relay_key(self, address: str) -> bool:
        with self._db.connection() as conn:
            return int(conn.execute("DELETE FROM relay_keys WHERE address = ?", (address,)).rowcount) > 0

    def anchor_covering(self, index: int) -> StoredAnchor | None:
        """The first recorded anchor whose tree contains entry ``index``."""
        return self._anchor_row("WHERE tree_size > ? ORDER BY tree_size LIMIT 1", (index,))
