"""Who may append to the evidence log (registry/evidence/admission.py), over real HTTP: a
registry with its own Anvil served by uvicorn on loopback (tests/support/registry.py)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from tests.support.registry import OPERATOR_TOKEN, Registry, running_registry
from zk.evidence.record import EventType, EvidenceRecord, SignedRecord, sign_record

KNOWN = Account.from_key(hashlib.sha256(b"admission relay known").digest())
OTHER = Account.from_key(hashlib.sha256(b"admission relay other").digest())
ADDED = Account.from_key(hashlib.sha256(b"admission relay added by the operator").digest())
STRANGER = Account.create()
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
BURST = 5
_counter = iter(range(10**9))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    data = tmp_path_factory.mktemp("admission")
    # KNOWN and OTHER are configured; a bucket of BURST records refilled very slowly.
    with running_registry(
        Path(data), relay_keys=[KNOWN.address, OTHER.address.lower()], evidence_burst=BURST, evidence_rate=0.001
    ) as reg:
        yield reg


def record(account: object, *, chain_id: int | None = None, event_time: int | None = None,
           registry: Registry | None = None) -> SignedRecord:
    assert registry is not None
    n = next(_counter)
    rec = EvidenceRecord(
        chain_id=registry.manifest.chain_id if chain_id is None else chain_id,
        event=EventType.SUBMISSION_ACCEPTANCE,
        event_time=int(time.time()) if event_time is None else event_time,
        issuer=account.address,  # type: ignore[attr-defined]
        blob_digest=hashlib.sha256(b"admission blob %d" % n).digest(),
        region="test",
    )
    return sign_record(rec, account.key)  # type: ignore[attr-defined]


def post(http: httpx.Client, signed: SignedRecord) -> httpx.Response:
    return http.post("/v1/evidence", content=signed.to_json(), headers={"content-type": "application/json"})


def code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_only_registered_relay_keys_may_append(registry: Registry) -> None:
    log = registry.service.evidence
    assert log is not None
    with registry.client() as http:
        before = log.size
        assert code(post(http, record(STRANGER, registry=registry))) == (403, "unknown_signer")
        batch = [record(KNOWN, registry=registry).to_dict(), record(STRANGER, registry=registry).to_dict()]
        assert code(http.post("/v1/evidence/batch", json={"records": batch})) == (403, "unknown_signer")
        assert log.size == before  # nothing of a refused batch is appended
        # A record claiming a known issuer but signed by another key: a bad signature.
        forged = record(STRANGER, registry=registry).to_dict()
        forged["record"]["issuer"] = KNOWN.address
        assert code(http.post("/v1/evidence", json=forged)) == (422, "bad_signature")
        assert code(post(http, record(ADDED, registry=registry))) == (403, "unknown_signer")

        r = post(http, record(KNOWN, registry=registry))
        assert r.status_code == 201, r.text
        assert log.entry_at(r.json()["index"]).signed.record.issuer == KNOWN.address

        # The operator adds a key at run time (persisted in the log's database) and removes it.
        assert code(http.put(f"/v1/evidence/relays/{ADDED.address}")) == (401, "unauthorized")
        assert http.put(f"/v1/evidence/relays/{ADDED.address}", headers=AUTH).status_code == 201
        assert http.put(f"/v1/evidence/relays/{ADDED.address.lower()}", headers=AUTH).status_code == 200
        listed = {(x["address"], x["source"]) for x in http.get("/v1/evidence/relays").json()["relays"]}
        assert listed == {(KNOWN.address, "config"), (OTHER.address, "config"), (ADDED.address, "operator")}
        assert post(http, record(ADDED, registry=registry)).status_code == 201
        assert log.relay_keys() == [ADDED.address]
        assert code(http.delete(f"/v1/evidence/relays/{KNOWN.address}", headers=AUTH)) == (409, "configured")
        assert http.delete(f"/v1/evidence/relays/{ADDED.address}", headers=AUTH).status_code == 200
        assert code(http.delete(f"/v1/evidence/relays/{ADDED.address}", headers=AUTH)) == (404, "not_found")
        assert code(post(http, record(ADDED, registry=registry))) == (403, "unknown_signer")
        bad = "0x" + "Ab" * 20  # mixed case with a wrong EIP-55 checksum
        assert code(http.put(f"/v1/evidence/relays/{bad}", headers=AUTH)) == (422, "bad_address")


def test_chain_id_and_event_time_are_bounded(registry: Registry) -> None:
    log = registry.service.evidence
    assert log is not None
    now = int(time.time())
    with registry.client() as http:
        before = log.size
        other_chain = registry.manifest.chain_id + 1
        assert code(post(http, record(OTHER, chain_id=other_chain, registry=registry))) == (422, "wrong_chain")
        far_future = now + 3600
        assert code(post(http, record(OTHER, event_time=far_future, registry=registry))) == (422, "event_time_in_future")
        too_old = now - 8 * 24 * 3600
        assert code(post(http, record(OTHER, event_time=too_old, registry=registry))) == (422, "event_time_too_old")
        assert log.size == before
        # Inside the bounds: a little clock skew ahead, a few days old.
        assert post(http, record(OTHER, event_time=now + 60, registry=registry)).status_code == 201
        assert post(http, record(OTHER, event_time=now - 3 * 24 * 3600, registry=registry)).status_code == 201


def test_a_flood_from_one_relay_is_rate_limited_per_relay(registry: Registry) -> None:
    log = registry.service.evidence
    assert log is not None
    flood = Account.from_key(hashlib.sha256(b"admission flooding relay").digest())
    calm = Account.from_key(hashlib.sha256(b"admission calm relay").digest())
    with registry.client() as http:
        for account in (flood, calm):
            assert http.put(f"/v1/evidence/relays/{account.address}", headers=AUTH).status_code == 201
        statuses = [post(http, record(flood, registry=registry)).status_code for _ in range(BURST)]
        assert statuses == [201] * BURST
        size = log.size
        for _ in range(20):
            r = post(http, record(flood, registry=registry))
            assert code(r) == (429, "rate_limited")
            assert int(r.headers["retry-after"]) >= 1
        batch = [record(flood, registry=registry).to_dict()]
        assert code(http.post("/v1/evidence/batch", json={"records": batch})) == (429, "rate_limited")
        assert log.size == size
        # Another relay has its own budget.
        assert post(http, record(calm, registry=registry)).status_code == 201
        # A batch is charged all or nothing, and one larger than the burst can never pass.
        big = [record(calm, registry=registry).to_dict() for _ in range(BURST + 1)]
        assert code(http.post("/v1/evidence/batch", json={"records": big})) == (413, "too_large")
        fits = [record(calm, registry=registry).to_dict() for _ in range(BURST - 1)]
        assert http.post("/v1/evidence/batch", json={"records": fits}).status_code == 201
        assert code(post(http, record(calm, registry=registry))) == (429, "rate_limited")


def test_records_already_in_the_log_and_repeats_cost_the_relay_nothing(registry: Registry) -> None:
    """Anyone can read a relay's records (GET /v1/evidence/{id}) and post them again: that
    must not spend the relay's budget (or anyone could exhaust a relay's budget with its
    own records)."""
    log = registry.service.evidence
    assert log is not None
    victim = Account.from_key(hashlib.sha256(b"admission relay whose records are replayed").digest())
    with registry.client() as http:
        assert http.put(f"/v1/evidence/relays/{victim.address}", headers=AUTH).status_code == 201
        r = post(http, record(victim, registry=registry))
        assert r.status_code == 201, r.text
        public = http.get(f"/v1/evidence/{r.json()['evidence_id']}").json()
        replayed = {"record": public["record"], "signature": public["signature"]}
        size = log.size
        for _ in range(3):  # far more than the relay's burst, again and again
            r = http.post("/v1/evidence/batch", json={"records": [replayed] * (BURST * 4)})
            assert r.status_code == 201, r.text
            r = http.post("/v1/evidence", json=replayed)
            assert r.status_code == 200 and r.json()["created"] is False, r.text
        assert log.size == size
        # One new record repeated in a batch is charged once.
        fresh = record(victim, registry=registry).to_dict()
        assert http.post("/v1/evidence/batch", json={"records": [fresh] * (BURST * 4)}).status_code == 201
        assert log.size == size + 1
        # The relay still has the rest of its budget: BURST - 2 new records pass.
        fits = [record(victim, registry=registry).to_dict() for _ in range(BURST - 2)]
        r = http.post("/v1/evidence/batch", json={"records": fits})
        assert r.status_code == 201, r.text
        assert code(post(http, record(victim, registry=registry))) == (429, "rate_limited")
