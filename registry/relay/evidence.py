"""Evidence the relay emits (zk/evidence/record.py): signed EIP-712 records posted to a
registry's ``POST /v1/evidence`` (registry/evidence_api.py), best effort.

``emit`` signs and appends the record to a local queue table and returns at once; a
background thread posts queued records and deletes each once the log accepted it (2xx)
or refused it for good (4xx: retrying would not help). Network errors and 5xx are
retried with exponential backoff. The blob path never waits for the log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from eth_account import Account

from registry.sqlite import connect
from zk.evidence.record import EventType, EvidenceRecord, ReasonCode, sign_record

log = logging.getLogger(__name__)

KEY_FILE = "relay.key"


def load_relay_key(data_dir: Path, keystore: Path | None = None, password: str | None = None) -> bytes:
    """The relay's secp256k1 key: from an eth-account keystore file (with ``password``), else
    ``data_dir/relay.key`` (hex, mode 0600), generated on first use."""
    if keystore is not None:
        if password is None:
            raise ValueError("a keystore needs its password")
        return bytes(Account.decrypt(json.loads(Path(keystore).read_text()), password))
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        text = path.read_text().strip()
        key = bytes.fromhex(text.removeprefix("0x"))
        if len(key) != 32:
            raise ValueError(f"{path} does not hold a 32-byte key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = bytes(Account.create().key)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


class EvidenceEmitter:
    def __init__(
        self,
        queue_path: Path | str,
        private_key: bytes,
        chain_id: int,
        region: str,
        target_url: str | None,
        *,
        clock: Callable[[], float] = time.time,
        max_backoff: float = 60.0,
    ) -> None:
        self._key = private_key
        self.address = Account.from_key(private_key).address
        self.chain_id = chain_id
        self.region = region
        self.target_url = None if target_url is None else target_url.rstrip("/")
        self._clock = clock
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db = connect(queue_path, durable=True)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS evidence_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0)"
        )
        self.sent = 0
        self.dropped = 0

    def emit(
        self, event: EventType, blob_digest: bytes, reason: ReasonCode | None = None, links: tuple[bytes, ...] = ()
    ) -> bytes | None:
        """Sign and queue one record; return its record hash (None when no log is configured
        or the record cannot be built: evidence never breaks the blob path)."""
        if self.target_url is None:
            return None
        try:
            record = EvidenceRecord(
                chain_id=self.chain_id,
                event=event,
                event_time=int(self._clock()),
                issuer=self.address,
                blob_digest=blob_digest,
                region=self.region,
                links=links,
                reason=reason,
            )
            signed = sign_record(record, self._key)
            with self._lock:
                self._db.execute("INSERT INTO evidence_queue (body) VALUES (?)", (signed.to_json(),))
        except Exception:  # evidence is best effort
            log.exception("could not queue an evidence record")
            return None
        self._wake.set()
        return record.record_hash()

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM evidence_queue").fetchone()[0])

    def flush_once(self, client: httpx.Client) -> int:
        """Post every due record once; return how many left the queue."""
        if self.target_url is None:
            return 0
        now = time.monotonic()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body, attempts FROM evidence_queue WHERE next_at <= ? ORDER BY id LIMIT 100", (now,)
            ).fetchall()
        done = 0
        for row_id, body, attempts in rows:
            try:
                response = client.post(
                    f"{self.target_url}/v1/evidence", content=body, headers={"content-type": "application/json"}
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            with self._lock:
                if 200 <= status < 300 or 400 <= status < 500:
                    if status >= 400:
                        self.dropped += 1
                        log.warning("the evidence log refused a record (HTTP %d)", status)
                    else:
                        self.sent += 1
                    self._db.execute("DELETE FROM evidence_queue WHERE id = ?", (row_id,))
                    done += 1
                else:
                    delay = min(self._max_backoff, 0.5 * 2 ** min(attempts, 16))
                    self._db.execute(
                        "UPDATE evidence_queue SET attempts = attempts + 1, next_at = ? WHERE id = ?",
                        (time.monotonic() + delay, row_id),
                    )
        return done

    def start(self, interval: float = 1.0) -> None:
        if self._thread is not None or self.target_url is None:
            return
        # next_at holds monotonic times of this process: a restart makes every row due.
        with self._lock:
            self._db.execute("UPDATE evidence_queue SET next_at = 0")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="relay-evidence", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                try:
                    self.flush_once(client)
                except Exception:
                    log.exception("evidence flush failed")
                self._wake.wait(interval)
                self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        with self._lock:
            self._db.close()
