"""The relay's blob store (SQLite, WAL, ``synchronous=FULL``: a blob is on disk before 201).

Tables: ``mailboxes(tag, pickup_hash, created_at)`` (the first blob to a tag fixes the
SHA-256 of its pickup capability) and ``blobs(id, mailbox, blob, digest, received_at,
handed_over, acceptance)``. Nothing about a sender is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from registry.sqlite import connect

FILE_NAME = "relay.sqlite"


class MailboxConflict(ValueError):
    """The mailbox tag exists with another pickup hash."""


class WrongCapability(PermissionError):
    """The pickup capability does not open this mailbox (or this blob)."""


@dataclass(frozen=True)
class StoredBlob:
    id: str
    mailbox: bytes
    blob: bytes
    digest: bytes
    received_at: float
    handed_over: bool
    acceptance: bytes | None


def capability_hash(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class BlobStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = connect(self.path, durable=True)
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS mailboxes (tag BLOB PRIMARY KEY, pickup_hash BLOB NOT NULL,"
            " created_at REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, mailbox BLOB NOT NULL, blob BLOB NOT NULL,"
            " digest BLOB NOT NULL, received_at REAL NOT NULL, handed_over INTEGER NOT NULL DEFAULT 0,"
            " acceptance BLOB);"
            "CREATE INDEX IF NOT EXISTS blobs_mailbox ON blobs (mailbox, received_at);"
            "CREATE INDEX IF NOT EXISTS blobs_age ON blobs (received_at);"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, mailbox: bytes, pickup_hash: bytes, blob: bytes, digest: bytes, now: float) -> str:
        """Store a blob durably; raise :class:`MailboxConflict` for a tag owned by another hash."""
        blob_id = secrets.token_hex(16)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT pickup_hash FROM mailboxes WHERE tag = ?", (mailbox,)).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO mailboxes (tag, pickup_hash, created_at) VALUES (?, ?, ?)", (mailbox, pickup_hash, now)
                    )
                elif not hmac.compare_digest(bytes(row[0]), pickup_hash):
                    raise MailboxConflict("this mailbox tag is in use with another pickup capability")
                self._db.execute(
                    "INSERT INTO blobs (id, mailbox, blob, digest, received_at) VALUES (?, ?, ?, ?, ?)",
                    (blob_id, mailbox, blob, digest, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return blob_id

    def set_acceptance(self, blob_id: str, record_hash: bytes) -> None:
        with self._lock:
            self._db.execute("UPDATE blobs SET acceptance = ? WHERE id = ?", (record_hash, blob_id))

    def _check(self, stored_hash: bytes, secret: bytes) -> None:
        if not hmac.compare_digest(bytes(stored_hash), capability_hash(secret)):
            raise WrongCapability("wrong pickup capability")

    def pickup(self, mailbox: bytes, secret: bytes) -> list[StoredBlob]:
        """The mailbox's blobs, oldest first (an unknown mailbox is empty); marks them handed over."""
        with self._lock:
            row = self._db.execute("SELECT pickup_hash FROM mailboxes WHERE tag = ?", (mailbox,)).fetchone()
            if row is None:
                return []
            self._check(row[0], secret)
            rows = self._db.execute(
                "SELECT id, mailbox, blob, digest, received_at, handed_over, acceptance FROM blobs"
                " WHERE mailbox = ? ORDER BY received_at, id",
                (mailbox,),
            ).fetchall()
            self._db.execute("UPDATE blobs SET handed_over = 1 WHERE mailbox = ?", (mailbox,))
        return [
            StoredBlob(r[0], bytes(r[1]), bytes(r[2]), bytes(r[3]), float(r[4]), bool(r[5]), None if r[6] is None else bytes(r[6]))
            for r in rows
        ]

    def delete(self, blob_id: str, secret: bytes) -> StoredBlob | None:
        """Delete a blob whose mailbox opens with ``secret``; None if there is no such blob."""
        with self._lock:
            row = self._db.execute(
                "SELECT b.id, b.mailbox, b.blob, b.digest, b.received_at, b.handed_over, b.acceptance, m.pickup_hash"
                " FROM blobs b JOIN mailboxes m ON m.tag = b.mailbox WHERE b.id = ?",
                (blob_id,),
            ).fetchone()
            if row is None:
                return None
            self._check(row[7], secret)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
            self._drop_empty_mailboxes()
            self._db.execute("COMMIT")
        return StoredBlob(row[0], bytes(row[1]), b"", bytes(row[3]), float(row[4]), bool(row[5]), None if row[6] is None else bytes(row[6]))

    def _drop_empty_mailboxes(self) -> None:
        self._db.execute("DELETE FROM mailboxes WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE blobs.mailbox = mailboxes.tag)")

    def purge(self, before: float) -> int:
        """Delete blobs received before ``before`` (retention), and mailboxes left empty."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._db.execute("DELETE FROM blobs WHERE received_at < ?", (before,)).rowcount
            self._drop_empty_mailboxes()
            self._db.execute("COMMIT")
        return int(n)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM blobs").fetchone()[0])

    def exists(self, blob_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM blobs WHERE id = ?", (blob_id,)).fetchone() is not None
