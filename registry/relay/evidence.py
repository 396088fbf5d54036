"""Evidence the relay emits (zk/evidence/record.py): signed EIP-712 records posted to a
registry's ``POST /v1/evidence`` (registry/web/routes/evidence.py), best effort.

``emit`` signs the record (natively, :class:`zk.evidence.record.RecordSigner`) and
appends it to a local queue table, returning once the row is durable. Concurrent emits
share one commit (group commit: the first caller to find no commit under way writes
every row queued so far in one transaction, one fsync; the others wait until the commit
holding their row is done), so no record hash is handed out before its row is on disk.
A background thread posts queued records, a batch at a time (``POST /v1/evidence/batch``,
one request and one log transaction for up to 100 records), and deletes them once the
log accepted them (2xx) or refused them for good (4xx: retrying would not help). A batch
refused with any other 4xx (a log without the batch route, a batch over the relay's
burst, one bad record) is posted again record by record, so one record's refusal never
drops the others. Network errors, 5xx, 429
``rate_limited`` (after its ``Retry-After``) and 403 ``unknown_signer`` (the operator may
register this relay's key later) are retried with exponential backoff. The blob path
never waits for the log.

Rejection records (events with a reason code) are triggered by whoever sends junk, so
they are rate limited: at most ``rejection_burst`` at once, refilled at
``rejection_per_minute``. Beyond that no record is signed; the refusal is only counted
(``suppressed``, per reason code, shown in the relay's health), so a flood of junk sends
cannot fill the queue or the log.

Privacy (docs/privacy.md "Evidence"): a record carries a blob digest, which links the
record of a send to the records of its pickup. So ``eventTime`` is rounded down to
``time_resolution`` (an hour by default: the evidence standard fixes no precision, and the
log's checks only need it within ``evidence_max_age``/``evidence_max_skew``, see
docs/evidence.md), queued records have random ids, and they leave in batches: the thread
posts once ``batch_min`` records are due or the oldest waited ``batch_max_wait`` seconds,
in random order, so the order of the log's entries is not the order of the events.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from eth_account import Account

from registry._utils.backoff import backoff_delay
from registry._utils.logs import exc_type
from registry.ledger.accounts import load_keystore
from registry.ledger.errors import DeploymentError
from registry.storage.sqlite import close_connection, connect, create_schema, transaction
from registry.client._http import RegistryClientError, error_code, request
from registry.client._http import retry_after as _retry_after
from zk.evidence.record import EventType, EvidenceRecord, ReasonCode, RecordSigner

log = logging.getLogger(__name__)

KEY_FILE = "relay.key"
#: Records posted in one batch (``POST /v1/evidence/batch`` takes up to 1000).
BATCH_SIZE = 100


def load_relay_key(data_dir: Path, keystore: Path | None = None, password: str | None = None) -> bytes:
    """The relay's secp256k1 key: from an eth-account keystore file (with ``password``), else
    ``data_dir/relay.key`` (hex, mode 0600), generated on first use."""
    if keystore is not None:
        if password is None:
            raise ValueError("a keystore needs its password")
        try:
            return bytes(load_keystore(keystore, password).key)  # strict JSON, one-line errors
        except DeploymentError as exc:
            raise ValueError(str(exc)) from None
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
        rejection_burst: int = 20,
        rejection_per_minute: float = 10.0,
        time_resolution: int = 3600,
        batch_min: int = 1,
        batch_max_wait: float = 0.0,
    ) -> None:
        if time_resolution < 1 or batch_min < 1 or batch_max_wait < 0:
            raise ValueError("time_resolution and batch_min must be >= 1, batch_max_wait >= 0")
        #: eventTime is rounded down to a multiple of this many seconds
        self.time_resolution = int(time_resolution)
        self.batch_min = batch_min
        self.batch_max_wait = batch_max_wait
        #: monotonic time since which records have been waiting (memory only)
        self._waiting_since: float | None = None
        if rejection_burst < 0 or rejection_per_minute < 0:
            raise ValueError("rejection_burst and rejection_per_minute must be >= 0")
        self._signer = RecordSigner(private_key)
        self.address = self._signer.address
        #: Group commit of queue rows (:meth:`_queue`): rows waiting for the next commit,
        #: whether a commit is under way; ``_commit_cv`` guards both.
        self._commit_cv = threading.Condition()
        self._rows: list[tuple[_Ticket, int, str]] = []
        self._committing = False
        #: False once the log answered the batch route with 404/405 (an older log).
        self._batch_route = True
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
        create_schema(
            self._db,
            [
                "CREATE TABLE IF NOT EXISTS evidence_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,"
                " attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0)"
            ],
        )
        self.sent = 0
        self.dropped = 0
        # Token bucket of rejection records (monotonic time: a wall-clock jump must not refill it).
        self._rejection_burst = float(rejection_burst)
        self._rejection_rate = rejection_per_minute / 60.0
        self._rejection_tokens = float(rejection_burst)
        self._rejection_at = time.monotonic()
        self.suppressed: Counter[str] = Counter()
        self._suppressed_logged = 0
        self._unknown_warned = False
        self._hold_until = 0.0
        #: The log's last word on this relay's key was ``unknown_signer`` (health: degraded).
        self.unknown_signer = False

    def emit(
        self, event: EventType, blob_digest: bytes, reason: ReasonCode | None = None, links: tuple[bytes, ...] = ()
    ) -> bytes | None:
        """Sign and queue one record; return its record hash (None when no log is configured
        or the record cannot be built: evidence never breaks the blob path)."""
        if self.target_url is None:
            return None
        if reason is not None and not self._take_rejection_token():
            with self._lock:
                self.suppressed[reason.value] += 1
            return None
        try:
            record = EvidenceRecord(
                chain_id=self.chain_id,
                event=event,
                event_time=int(self._clock()) // self.time_resolution * self.time_resolution,
                issuer=self.address,
                blob_digest=blob_digest,
                region=self.region,
                links=links,
                reason=reason,
            )
            signed = self._signer.sign(record)
            # A random id: the queue's order is not the order of the events.
            self._queue(secrets.randbits(62) + 1, signed.to_json())
            digest = signed.record_hash
        except Exception as exc:  # evidence is best effort
            log.error("could not queue an evidence record: %s", exc_type(exc))
            return None
        self._wake.set()
        return digest

    def _queue(self, row_id: int, body: str) -> None:
        """Insert one row; return when it is committed (group commit, module docstring).
        Raises what the commit raised if the transaction holding this row failed."""
        ticket = _Ticket()
        with self._commit_cv:
            self._rows.append((ticket, row_id, body))
            while not ticket.done:
                if self._committing:
                    self._commit_cv.wait()
                    continue
                self._committing = True
                rows, self._rows = self._rows, []
                self._commit_cv.release()
                error: BaseException | None = None
                try:
                    self._commit([(i, b) for _, i, b in rows])
                except BaseException as exc:  # handed to every waiter of this commit
                    error = exc
                finally:
                    self._commit_cv.acquire()
                    self._committing = False
                    for t, _, _ in rows:
                        t.done, t.error = True, error
                    self._commit_cv.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def _commit(self, rows: list[tuple[int, str]]) -> None:
        with self._lock:
            with transaction(self._db):
                self._db.executemany("INSERT INTO evidence_queue (id, body) VALUES (?, ?)", rows)
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()

    def _take_rejection_token(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._rejection_tokens = min(
                self._rejection_burst, self._rejection_tokens + (now - self._rejection_at) * self._rejection_rate
            )
            self._rejection_at = now
            if self._rejection_tokens >= 1.0:
                self._rejection_tokens -= 1.0
                return True
            return False

    def suppressed_total(self) -> int:
        with self._lock:
            return sum(self.suppressed.values())

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM evidence_queue").fetchone()[0])

    def flush_once(self, client: httpx.Client) -> int:
        """Post every due record once (a batch at a time where the log takes batches);
        return how many left the queue."""
        if self.target_url is None:
            return 0
        now = time.monotonic()
        if now < self._hold_until:  # the log asked this relay to wait (429, or key not registered)
            return 0
        with self._lock:
            due = int(self._db.execute("SELECT count(*) FROM evidence_queue WHERE next_at <= ?", (now,)).fetchone()[0])
            if due == 0:
                return 0
            if self._waiting_since is None:  # queued by an earlier run
                self._waiting_since = now
            if due < self.batch_min and now - self._waiting_since < self.batch_max_wait:
                return 0  # a batch hides the order of its records: wait for more
            # Random ids: this is a random order, then shuffled once more.
            rows = self._db.execute(
                "SELECT id, body, attempts FROM evidence_queue WHERE next_at <= ? ORDER BY id LIMIT ?", (now, BATCH_SIZE)
            ).fetchall()
            secrets.SystemRandom().shuffle(rows)
            if due <= len(rows):
                self._waiting_since = None
        if len(rows) > 1 and self._batch_route:
            done = self._post_batch(client, rows)
            if done is not None:
                return done
        done = 0
        for row in rows:
            status, retry_after, hold = self._post(client, "/v1/evidence", row[1])
            done += self._settle([row], status, retry_after, hold)
            if hold:
                break
        return done

    def _post_batch(self, client: httpx.Client, rows: list[tuple[int, str, int]]) -> int | None:
        """Post ``rows`` as one batch; how many left the queue, or None when they are to
        be posted one by one (the log refused the batch as such: module docstring)."""
        body = '{"records":[' + ",".join(row[1] for row in rows) + "]}"
        status, retry_after, hold = self._post(client, "/v1/evidence/batch", body)
        if status in (404, 405):
            self._batch_route = False  # a log without the batch route
            return None
        if 400 <= status < 500 and not hold:
            return None
        return self._settle(rows, status, retry_after, hold)

    def _post(self, client: httpx.Client, path: str, body: str) -> tuple[int, float, bool]:
        """(HTTP status, 0 for no answer; Retry-After; whether every record must wait)."""
        try:
            response = request(
                client, "POST", f"{self.target_url}{path}", content=body, headers={"content-type": "application/json"}
            )
        except RegistryClientError:  # not sent, or no answer: retried later
            return 0, 0.0, False
        status = response.status_code
        code = error_code(response) if status in (403, 429) else None
        if code not in ("unknown_signer", "rate_limited"):
            return status, 0.0, False
        # Not a verdict on the records but on this relay: every record waits.
        self.unknown_signer = code == "unknown_signer"
        if self.unknown_signer and not self._unknown_warned:
            self._unknown_warned = True
            log.warning("the evidence log does not know this relay's key %s (yet): records wait", self.address)
        return 503, _retry_after(response), True

    def _settle(self, rows: list[tuple[int, str, int]], status: int, retry_after: float, hold: bool) -> int:
        """Delete rows the log took (2xx) or refused for good (4xx); back off the others."""
        with self._lock:
            if 200 <= status < 300 or 400 <= status < 500:
                if status >= 400:
                    self.dropped += len(rows)
                    log.warning("the evidence log refused a record (HTTP %d)", status)
                else:
                    self.sent += len(rows)
                    self.unknown_signer = False
                with transaction(self._db):
                    self._db.executemany("DELETE FROM evidence_queue WHERE id = ?", [(row[0],) for row in rows])
                return len(rows)
            delay = max(retry_after, backoff_delay(max(row[2] for row in rows) + 1, 0.5, self._max_backoff))
            with transaction(self._db):
                self._db.executemany(
                    "UPDATE evidence_queue SET attempts = attempts + 1, next_at = ? WHERE id = ?",
                    [(time.monotonic() + delay, row[0]) for row in rows],
                )
            if hold:
                self._hold_until = time.monotonic() + delay
            return 0

    def _log_suppressed(self) -> None:
        """One line per flush that suppressed rejection records since the last one (counts only)."""
        with self._lock:
            total = sum(self.suppressed.values())
            if total == self._suppressed_logged:
                return
            new, self._suppressed_logged = total - self._suppressed_logged, total
        log.warning("%d rejection record(s) not signed: rejection evidence rate limit (%d in total)", new, total)

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
                    self._log_suppressed()
                except Exception as exc:
                    log.error("evidence flush failed: %s", exc_type(exc))
                self._wake.wait(interval)
                self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        with self._lock:
            close_connection(self._db)


class _Ticket:
    """One queued row's place in a group commit: done, and the commit's error if any."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: BaseException | None = None
