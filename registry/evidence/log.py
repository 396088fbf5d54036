"""The registry's delivery-evidence log: an append-only RFC 9162 tree in SQLite.

- One entry per signed evidence record (``docs/evidence.md``): the entry is the 32-byte
  EIP-712 record hash, the leaf ``SHA-256(0x00 || record_hash)``.
- Complete subtree hashes are memoised at append time in ``nodes(level, idx, hash)``
  (level 0 = leaf hashes), as :func:`zk.evidence.merkle.nodes_completed_by_append`
  describes, so the log is a :class:`zk.evidence.merkle.TreeReader` whose proofs cost
  ``O(log n)`` indexed reads.
- SQLite in WAL mode with ``synchronous=FULL``: an append returns only after its
  transaction is committed (durable across a crash or power loss).
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

from registry.storage.sqlite import close_connection, connect, create_schema, transaction
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
    """See the module docstring. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path | str, signer: NoteSigner, origin: str) -> None:
        if signer.name != origin:
            raise ValueError(f"the log key is named {signer.name!r}, the origin is {origin!r}")
        self.path = Path(path)
        self.signer = signer
        self.origin = origin
        self._lock = threading.RLock()
        self._db = connect(self.path, durable=True)
        create_schema(self._db, _SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='origin'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('origin', ?)", (origin,))
        elif row[0] != origin:
            raise ValueError(f"{self.path} is the log of {row[0]!r}, not {origin!r}")
        self._size = int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        # The right frontier: the newest complete node of each level (the only nodes an
        # append needs as left siblings).
        self._frontier: dict[int, tuple[int, bytes]] = {}
        for level, idx, h in self._db.execute(
            "SELECT level, idx, hash FROM nodes n WHERE idx = (SELECT MAX(idx) FROM nodes WHERE level = n.level)"
        ):
            self._frontier[int(level)] = (int(idx), bytes(h))

    def close(self) -> None:
        with self._lock:
            close_connection(self._db)  # checkpointed: the main file alone is a full copy

    @property
    def verifier(self) -> NoteVerifier:
        return self.signer.verifier()

    # --- TreeReader ------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    def leaf_hash(self, index: int) -> bytes:
        return self.subtree_hash(index, 0)

    def subtree_hash(self, start: int, level: int) -> bytes:
        width = 1 << level
        if level < 0 or start < 0 or start % width or start + width > self._size:
            raise merkle.ProofError("bad_subtree", f"[{start}, {start + width}) is not a complete subtree")
        with self._lock:
            row = self._db.execute(
                "SELECT hash FROM nodes WHERE level=? AND idx=?", (level, start >> level)
            ).fetchone()
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

    def append_detailed(self, records: Sequence[SignedRecord]) -> list[tuple[int, str, bool]]:
        """:meth:`append_many`, also telling for each record whether it is new (False:
        it was already in the log, or earlier in the same batch)."""
        hashes: list[bytes] = []
        for i, signed in enumerate(records):
            try:
                hashes.append(verified_hash(signed))
            except EvidenceLogError as exc:
                raise type(exc)(f"record {i}: {exc.detail}" if len(records) > 1 else exc.detail) from None
        # The hour only (docs/privacy.md): an entry's index already orders it; the relay
        # shuffles its records before posting, so neither says when a blob moved.
        now = int(time.time()) // APPENDED_AT_RESOLUTION * APPENDED_AT_RESOLUTION
        out: list[tuple[int, str, bool]] = []
        with self._lock:
            frontier = dict(self._frontier)
            size = self._size
            seen: dict[bytes, int] = {}
            entry_rows: list[tuple[int, bytes, str, int]] = []
            node_rows: list[tuple[int, int, bytes]] = []
            for signed, rh in zip(records, hashes):
                existing = seen.get(rh)
                if existing is None:
                    row = self._db.execute("SELECT idx FROM entries WHERE record_hash=?", (rh,)).fetchone()
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
                    index, leaf, lambda lv, pos: self._frontier_node(frontier, lv, pos)
                )
                frontier[0] = (index, leaf)
                for level, position, h in completed:
                    node_rows.append((level, position, h))
                    frontier[level] = (position, h)
                out.append((index, rh.hex(), True))
            if entry_rows:
                with transaction(self._db):
                    self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", entry_rows)
                    self._db.executemany("INSERT INTO nodes VALUES (?, ?, ?)", node_rows)
                self._size = size
                self._frontier = frontier
        return out

    def _frontier_node(self, frontier: dict[int, tuple[int, bytes]], level: int, position: int) -> bytes:
        got = frontier.get(level)
        if got is not None and got[0] == position:
            return got[1]
        row = self._db.execute("SELECT hash FROM nodes WHERE level=? AND idx=?", (level, position)).fetchone()
        if row is None:
            raise RuntimeError(f"evidence log node ({level}, {position}) is missing")
        return bytes(row[0])

    # --- Reads -----------------------------------------------------------------------

    def known_hashes(self, hashes: Collection[bytes]) -> set[bytes]:
        """Which of ``hashes`` (record hashes) are in the log already."""
        found: set[bytes] = set()
        with self._lock:
            for h in hashes:
                if self._db.execute("SELECT 1 FROM entries WHERE record_hash=?", (h,)).fetchone() is not None:
                    found.add(h)
        return found

    def get(self, evidence_id: str) -> StoredEntry:
        """The entry of ``evidence_id`` (64 hex digits, optional 0x); raises EntryNotFound."""
        text = evidence_id.lower().removeprefix("0x") if isinstance(evidence_id, str) else ""
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise MalformedRecord("an evidence id is 64 hex digits")
        with self._lock:
            row = self._db.execute(
                "SELECT idx, record_json, appended_at FROM entries WHERE record_hash=?", (bytes.fromhex(text),)
            ).fetchone()
        if row is None:
            raise EntryNotFound(f"no evidence {text}")
        return StoredEntry(int(row[0]), text, SignedRecord.from_json(row[1]), int(row[2]))

    def entry_at(self, index: int) -> StoredEntry:
        with self._lock:
            row = self._db.execute(
                "SELECT record_hash, record_json, appended_at FROM entries WHERE idx=?", (index,)
            ).fetchone()
        if row is None:
            raise EntryNotFound(f"no entry {index}")
        return StoredEntry(index, bytes(row[0]).hex(), SignedRecord.from_json(row[1]), int(row[2]))

    def root(self, size: int | None = None) -> bytes:
        return merkle.root_hash(self, size)

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint note of the tree at ``size`` (default: now); cached per size."""
        n = self._size if size is None else size
        with self._lock:
            row = self._db.execute("SELECT note FROM checkpoints WHERE size=?", (n,)).fetchone()
            if row is not None:
                return str(row[0])
            note = sign_checkpoint(Checkpoint(self.origin, n, merkle.root_hash(self, n)), [self.signer])
            self._db.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?)", (n, note))
        return note

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        return merkle.inclusion_proof(self, index, size)

    def tlog_proof(self, index: int, size: int | None = None) -> TlogProof:
        """The C2SP tlog-proof of entry ``index`` against the signed checkpoint at ``size``."""
        n = self._size if size is None else size
        return TlogProof(index, tuple(self.inclusion(index, n)), self.checkpoint(n))

    def consistency(self, size1: int, size2: int | None = None) -> list[bytes]:
        return merkle.consistency_proof(self, size1, size2)

    # --- Anchors ---------------------------------------------------------------------

    def record_anchor(self, anchor: StoredAnchor) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO anchors VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (anchor.tree_size, anchor.root_hash, anchor.chain_id, anchor.contract, anchor.tx_hash,
                 anchor.block_number, anchor.block_time, anchor.recorded_at),
            )

    def _anchor_row(self, sql: str, args: tuple[int, ...] = ()) -> StoredAnchor | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM anchors " + sql, args).fetchone()
        if row is None:
            return None
        return StoredAnchor(int(row[0]), bytes(row[1]), int(row[2]), str(row[3]), bytes(row[4]),
                            int(row[5]), int(row[6]), float(row[7]))

    def latest_anchor(self) -> StoredAnchor | None:
        return self._anchor_row("ORDER BY tree_size DESC LIMIT 1")

    # --- Relay keys added by the operator (registry/evidence/admission.py) --------------

    def relay_keys(self) -> list[str]:
        with self._lock:
            return [str(r[0]) for r in self._db.execute("SELECT address FROM relay_keys ORDER BY address")]

    def add_relay_key(self, address: str) -> bool:
        """Store an (EIP-55) relay address; False if it was stored already."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO relay_keys VALUES (?, ?)", (address, int(time.time()))
            )
            return cur.rowcount > 0

    def remove_relay_key(self, address: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM relay_keys WHERE address = ?", (address,)).rowcount > 0

    def anchor_covering(self, index: int) -> StoredAnchor | None:
        """The first recorded anchor whose tree contains entry ``index``."""
        return self._anchor_row("WHERE tree_size > ? ORDER BY tree_size LIMIT 1", (index,))
