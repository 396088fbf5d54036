"""The relay's evidence under junk and back-pressure: a real relay (registry/relay/app.py)
and a real evidence log (registry/web/routes/evidence.py), both served by uvicorn on loopback,
the relay authorizing locally against the session Anvil (``-p tests.fixtures.anvil``)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI, Request

from registry.evidence.admission import EvidenceAdmission
from registry.web.routes.evidence import evidence_router
from registry.evidence.log import EvidenceLog, load_or_create_log_key
from registry.relay.evidence import EvidenceEmitter, load_relay_key
from tests.support.wait import wait_until
from tests.support.net import serve_app
from tests.registry.relay.support import running_relay
from zk.evidence.record import EventType, ReasonCode


def _log(tmp_path: Path) -> EvidenceLog:
    origin = "letro-zkid/test/relay-junk"
    return EvidenceLog(tmp_path / "log" / "evidence.sqlite", load_or_create_log_key(tmp_path / "log", origin), origin)


@pytest.fixture
def served_log(tmp_path: Path, deployed: Any) -> Iterator[tuple[EvidenceLog, EvidenceAdmission, str]]:
    log = _log(tmp_path)
    admission = EvidenceAdmission(deployed.manifest.chain_id, [], log, burst=1000, rate=1000)
    app = FastAPI()
    app.include_router(evidence_router(log, admission=admission))
    with serve_app(app) as url:
        yield log, admission, url
    log.close()


def _junk(i: int) -> dict[str, Any]:
    """A well-formed send whose proof is garbage: refused by the authorization check."""
    return {
        "mailbox": secrets.token_hex(32),
        "pickup_hash": hashlib.sha256(b"cap %d" % i).hexdigest(),
        "blob": base64.b64encode(b"junk %d" % i).decode(),
        "group_id": 0,
        "proof": {"junk": i},
    }


def test_junk_sends_produce_a_bounded_number_of_rejection_records(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, served_log: tuple[EvidenceLog, EvidenceAdmission, str]
) -> None:
    log, admission, log_url = served_log
    admission.add(Account.from_key(load_relay_key(tmp_path / "relay")).address)
    junk_sends = 40
    with running_relay(
        tmp_path / "relay", anvil.rpc_url, deployed.manifest, evidence_url=log_url, rate_limit=10_000,
        evidence_rejection_burst=3, evidence_rejection_per_minute=0.001, evidence_interval=0.05,
    ) as (url, relay, _app), httpx.Client(base_url=url, timeout=60) as http:
        for i in range(junk_sends):
            r = http.post("/v1/blobs", json=_junk(i))
            assert 400 <= r.status_code < 500, r.text
        assert relay.evidence is not None
        wait_until(lambda: relay.evidence is not None and relay.evidence.pending() == 0, timeout=30)
        health = http.get("/v1/health").json()
        assert health["evidence_suppressed"] == junk_sends - 3
    assert log.size == 3
    reasons = {log.entry_at(i).signed.record.reason for i in range(3)}
    assert reasons == {ReasonCode.INVALID_PROOF}


def test_the_emitter_waits_for_registration_and_rate_limits(
    tmp_path: Path, deployed: Any, chain: Any
) -> None:
    """Records of a relay the log does not know yet, or that is over its rate, are kept and
    delivered later, not dropped."""
    log = _log(tmp_path)
    chain_id = deployed.manifest.chain_id
    # A bucket of 2 records, refilled at 4 per second.
    admission = EvidenceAdmission(chain_id, [], log, burst=2, rate=4.0)
    app = FastAPI()
    app.include_router(evidence_router(log, admission=admission))
    key = load_relay_key(tmp_path / "relay")
    with serve_app(app) as url:
        emitter = EvidenceEmitter(tmp_path / "relay" / "queue.sqlite", key, chain_id, "test", url, max_backoff=0.2)
        try:
            for i in range(6):
                assert emitter.emit(EventType.CONTENT_CONSIGNMENT, hashlib.sha256(b"%d" % i).digest()) is not None
            with httpx.Client(timeout=10) as client:
                emitter.flush_once(client)
                assert (emitter.pending(), log.size, emitter.dropped) == (6, 0, 0)  # unknown key: kept
                admission.add(emitter.address)
                wait_until(lambda: emitter.flush_once(client) >= 0 and emitter.pending() == 0, timeout=60)
            assert (log.size, emitter.sent, emitter.dropped) == (6, 6, 0)
        finally:
            emitter.close()
            log.close()


SECRET = "4242424242424242424242424242424242"  # stands for a commitment an error might quote


def _logged_types_only(caplog: pytest.LogCaptureFixture, expected: str) -> None:
    assert SECRET not in caplog.text
    assert all(r.exc_info is None and r.exc_text is None for r in caplog.records)  # no traceback
    assert expected in caplog.text


def test_a_failed_evidence_record_logs_the_error_type_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Privacy (registry/_utils/logs.py): the relay logs a failure's type, never its text."""
    import registry.relay.evidence as relay_evidence

    def failing_sign(*_: object) -> object:  # a fault no real input produces
        raise ValueError(f"cannot sign for {SECRET}")

    monkeypatch.setattr(relay_evidence.RecordSigner, "sign", failing_sign)
    emitter = EvidenceEmitter(tmp_path / "queue.sqlite", load_relay_key(tmp_path), 1, "test", "http://127.0.0.1:9")
    try:
        with caplog.at_level(logging.DEBUG):
            assert emitter.emit(EventType.CONTENT_CONSIGNMENT, hashlib.sha256(b"x").digest()) is None
        _logged_types_only(caplog, "could not queue an evidence record: ValueError")
    finally:
        emitter.close()


def test_a_failed_background_task_logs_the_error_type_only(caplog: pytest.LogCaptureFixture) -> None:
    """The relay's purge/probe loop survives a failure and logs its type only."""
    import asyncio

    from registry.relay.app import repeat

    calls: list[int] = []

    def purge() -> None:
        calls.append(1)
        raise sqlite3.IntegrityError(f"UNIQUE constraint failed: {SECRET}")

    async def two_rounds() -> None:
        task = asyncio.create_task(repeat(purge, 0.01, "relay purge"))
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        task.cancel()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(two_rounds())
    _logged_types_only(caplog, "relay purge failed: IntegrityError")


def test_records_leave_in_shuffled_batches_with_hour_times(tmp_path: Path) -> None:
    """docs/privacy.md "Batches": eventTime is rounded down to the hour; records wait until
    ``batch_min`` are due and are then posted in an order unrelated to the events'."""
    from fastapi.responses import JSONResponse

    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/v1/evidence")
    async def take(request: Request) -> JSONResponse:
        received.append(json.loads(await request.body())["record"])
        return JSONResponse({"ok": True}, status_code=201)

    hour = 480_000 * 3600
    emitter = EvidenceEmitter(
        tmp_path / "queue.sqlite", secrets.token_bytes(32), 31337, "test", None,
        clock=lambda: hour + 1234.5, time_resolution=3600, batch_min=8, batch_max_wait=3600.0,
    )
    with serve_app(app) as url, httpx.Client(timeout=30) as client:
        emitter.target_url = url
        digests = [hashlib.sha256(bytes([i])).digest() for i in range(8)]
        for d in digests[:7]:
            assert emitter.emit(EventType.CONTENT_CONSIGNMENT, d) is not None
        assert emitter.flush_once(client) == 0 and received == []  # 7 < batch_min: held
        emitter.emit(EventType.CONTENT_CONSIGNMENT, digests[7])
        assert emitter.flush_once(client) == 8
    emitter.close()
    assert {r["eventTime"] for r in received} == {hour}
    posted = [bytes.fromhex(r["blobDigest"][2:]) for r in received]
    assert sorted(posted) == sorted(digests)
    assert posted != digests  # shuffled (the same order by chance: 1 in 40320)
