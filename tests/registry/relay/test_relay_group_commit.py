"""Group commit in the relay (throughput without giving up durability): shared directory fsyncs of the blob store,
shared evidence-queue commits, evidence posted in batches; and nothing acknowledged
before it is durable: a real ``zkid relay`` killed (SIGKILL) right after its 201s keeps
every blob it acknowledged and the acceptance record of each."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

import registry.relay.store as relay_store
from registry.client.api import SendSlots, build_send_authorization
from registry.evidence.admission import EvidenceAdmission
from registry.evidence.log import EvidenceLog, load_or_create_log_key
from registry.ledger.anvil import free_port
from registry.ledger.deploy import save_manifest
from registry.relay.evidence import EvidenceEmitter
from registry.relay.store import BlobStore, GroupFsync
from registry.web.routes.evidence import evidence_router
from tests.registry.relay.support import send_body
from tests.registry.relay.test_relay_faults import _relay
from tests.support.net import serve_app
from zk.evidence.record import EventType, SignedRecord
from zk.identity import Identity
from zk.relay_scope import RegistryRef
from zk.tree import LeanIMT


def test_group_fsync_returns_only_after_an_fsync_begun_after_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    lock = threading.Lock()
    real = relay_store._fsync_dir

    def traced(path: Path) -> None:
        with lock:
            number = sum(1 for kind, _ in events if kind == "start") + 1
            events.append(("start", number))
        real(path)
        time.sleep(0.005)  # widen the window in which callers pile up
        with lock:
            events.append(("end", number))

    monkeypatch.setattr(relay_store, "_fsync_dir", traced)
    sync = GroupFsync(tmp_path)
    failures: list[str] = []

    def caller() -> None:
        with lock:
            begun = sum(1 for kind, _ in events if kind == "start")
        sync.sync()
        with lock:
            if not any(kind == "end" and n > begun for kind, n in events):
                failures.append(f"returned without an fsync begun after fsync #{begun}")

    threads = [threading.Thread(target=caller) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sync.calls == 24 and 1 <= sync.fsyncs <= 24


def test_group_fsync_failure_reaches_its_callers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> None:  # an I/O error cannot be produced for real here
        raise OSError(5, "Input/output error")

    store = BlobStore(tmp_path / "blobs")
    monkeypatch.setattr(relay_store, "_fsync_dir", broken)
    blob = b"never acknowledged"
    with pytest.raises(OSError):
        store.put(b"\x01" * 32, b"\x02" * 32, blob, hashlib.sha256(blob).digest(), time.time())
    assert store.count() == 0
    monkeypatch.undo()
    store.dir_sync.sync()  # works again once the directory can be flushed


def _queued_digests(path: Path) -> set[bytes]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {SignedRecord.from_json(b).record.blob_digest for (b,) in db.execute("SELECT body FROM evidence_queue")}


def test_concurrent_emits_are_each_committed_before_they_return(tmp_path: Path) -> None:
    queue = tmp_path / "queue.sqlite"
    emitter = EvidenceEmitter(queue, secrets.token_bytes(32), 31337, "test", "http://127.0.0.1:9")
    missing: list[bytes] = []
    commits = 0
    real_commit = emitter._commit

    def counted(rows: list[tuple[int, str]]) -> None:
        nonlocal commits
        commits += 1
        real_commit(rows)

    emitter._commit = counted  # type: ignore[method-assign]

    def emit(i: int) -> None:
        digest = hashlib.sha256(b"blob %d" % i).digest()
        assert emitter.emit(EventType.RELAY_ACCEPTANCE, digest) is not None
        if digest not in _queued_digests(queue):  # read by another connection: committed
            missing.append(digest)

    try:
        threads = [threading.Thread(target=emit, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert missing == []
        assert emitter.pending() == 32 and 1 <= commits <= 32
    finally:
        emitter.close()


def test_a_failed_group_commit_fails_every_emit_in_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emitter = EvidenceEmitter(tmp_path / "queue.sqlite", secrets.token_bytes(32), 31337, "test", "http://127.0.0.1:9")

    def full(rows: list[tuple[int, str]]) -> None:  # a full disk, injected
        raise sqlite3.OperationalError("database or disk is full")

    emitter._commit = full  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.ERROR):
            assert emitter.emit(EventType.RELAY_ACCEPTANCE, b"\x01" * 32) is None
        assert "could not queue an evidence record: OperationalError" in caplog.text
        assert emitter.pending() == 0
    finally:
        emitter.close()


class _PathCounter(BaseHTTPMiddleware):
    def __init__(self, app: Any, counts: dict[str, int]) -> None:
        super().__init__(app)
        self.counts = counts

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        self.counts[request.url.path] = self.counts.get(request.url.path, 0) + 1
        return await call_next(request)


@pytest.mark.parametrize("burst", [1000, 4])
def test_records_are_posted_in_batches_and_one_by_one_when_a_batch_is_refused(tmp_path: Path, burst: int) -> None:
    """A batch within the relay's burst is one request; a batch the log refuses as such
    (here 413 ``too_large``: more records than the burst) is posted record by record, and
    no record is dropped."""
    origin = "letro-zkid/test/relay-batches"
    log = EvidenceLog(tmp_path / "log" / "evidence.sqlite", load_or_create_log_key(tmp_path / "log", origin), origin)
    key = secrets.token_bytes(32)
    emitter = EvidenceEmitter(tmp_path / "queue.sqlite", key, 31337, "test", None)
    admission = EvidenceAdmission(31337, [emitter.address], log, burst=burst, rate=1000.0)
    counts: dict[str, int] = {}
    app = FastAPI()
    app.include_router(evidence_router(log, admission=admission))
    app.add_middleware(_PathCounter, counts=counts)
    try:
        with serve_app(app) as url, httpx.Client(timeout=30) as client:
            emitter.target_url = url
            for i in range(10):
                emitter.emit(EventType.CONTENT_CONSIGNMENT, hashlib.sha256(b"%d" % i).digest())
            assert emitter.flush_once(client) == 10
        assert (log.size, emitter.sent, emitter.dropped, emitter.pending()) == (10, 10, 0, 0)
        if burst >= 10:
            assert counts == {"/v1/evidence/batch": 1}
        else:
            assert counts == {"/v1/evidence/batch": 1, "/v1/evidence": 10}
    finally:
        emitter.close()
        log.close()


def test_a_relay_killed_right_after_its_201s_keeps_the_blobs_and_their_records(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any
) -> None:
    registry = deployed.registry
    group = registry.create_group()
    people = [Identity(f"durable-{i}") for i in range(4)]
    registry.add_members(group, [p.commitment for p in people])
    tree = LeanIMT(leaves=[p.commitment for p in people])
    ref = RegistryRef(deployed.manifest.chain_id, deployed.manifest.address("ZkIdRegistry"))
    sends = []
    for i, who in enumerate(people):
        blob = secrets.token_bytes(300)
        capability = secrets.token_bytes(32)
        proof, _ = build_send_authorization(
            who, tree, group, blob, time.time(), SendSlots(tmp_path / f"slots-{i}.sqlite"), registry=ref
        )
        sends.append((send_body(secrets.token_bytes(32), capability, blob, group, proof), capability, blob))
    data = tmp_path / "relay"
    save_manifest(data, deployed.manifest)
    acknowledged: list[tuple[dict[str, Any], bytes, bytes]] = []
    first = threading.Event()
    args = ("--rpc-url", anvil.rpc_url, "--send-group", str(group), "--evidence-url", f"http://127.0.0.1:{free_port()}")
    with _relay(data, *args) as (proc, port, _log):

        def send(body: dict[str, Any], capability: bytes, blob: bytes) -> None:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.post(f"http://127.0.0.1:{port}/v1/blobs", json=body, timeout=60)
                if r.status_code == 201:
                    acknowledged.append((r.json(), capability, blob))
                    first.set()

        threads = [threading.Thread(target=send, args=s) for s in sends]
        for t in threads:
            t.start()
        assert first.wait(60)
        os.kill(proc.pid, signal.SIGKILL)  # right after the first 201 reached us
        for t in threads:
            t.join()
        proc.wait(timeout=30)
    assert acknowledged
    store = BlobStore(data / relay_store.DIR_NAME)
    queued = _queued_digests(data / "evidence_queue.sqlite")
    with contextlib.closing(sqlite3.connect(data / "evidence_queue.sqlite")) as db:
        hashes = {SignedRecord.from_json(b).record.record_hash().hex() for (b,) in db.execute("SELECT body FROM evidence_queue")}
    for answer, capability, blob in acknowledged:
        digest = hashlib.sha256(blob).digest()
        mailbox = bytes.fromhex(next(b for b, c, _ in sends if c == capability)["mailbox"])
        assert [b.blob for b in store.pickup(mailbox, capability)] == [blob]
        assert digest in queued and answer["evidence_id"] in hashes
