"""The reference relay (registry/relay/app.py) served by uvicorn on loopback, authorizing
locally against the session Anvil with real Semaphore proofs, and sending its evidence to
a real evidence log (registry/web/routes/evidence.py) served next to it."""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI

from registry.client.api import SendSlots, build_send_authorization
from registry.evidence.admission import EvidenceAdmission
from registry.web.routes.evidence import evidence_router
from registry.evidence.log import EvidenceLog, load_or_create_log_key
from registry.relay.evidence import KEY_FILE, load_relay_key
from tests.support.wait import wait_until
from tests.support.net import serve_app
from tests.registry.relay.support import send_body, running_relay
from tests.support.clock import OffsetClock
from tests.support.registry import deployment_of
from zk.evidence.record import EventType, ReasonCode, verify_record_signature
from zk.identity import Identity
from zk.proof import generate_proof
from zk.relay_scope import RelayScope, blob_message, epoch_at
from zk.tree import LeanIMT


@pytest.fixture
def evidence_log(tmp_path: Path, deployed: Any) -> Iterator[tuple[EvidenceLog, str]]:
    origin = "letro-zkid/test/relay-evidence"
    log = EvidenceLog(tmp_path / "log" / "evidence.sqlite", load_or_create_log_key(tmp_path / "log", origin), origin)
    # The log trusts the relay's key (created here; the relay of tmp_path/relay loads it).
    relay_key = Account.from_key(load_relay_key(tmp_path / "relay")).address
    app = FastAPI()
    app.include_router(evidence_router(log, admission=EvidenceAdmission(deployed.manifest.chain_id, [relay_key], log)))
    with serve_app(app) as url:
        yield log, url
    log.close()


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_send_refusals_pickup_ack_purge_and_evidence(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, evidence_log: tuple[EvidenceLog, str]
) -> None:
    registry = deployed.registry
    group = registry.create_group()
    alice, bob, outsider = Identity("relay-alice"), Identity("relay-bob"), Identity("relay-outsider")
    registry.add_members(group, [alice.commitment, bob.commitment])
    tree = LeanIMT(leaves=[alice.commitment, bob.commitment])
    assert registry.root(group) == tree.root
    log, log_url = evidence_log
    clock = OffsetClock()
    limit = 2
    with running_relay(
        tmp_path / "relay", anvil.rpc_url, deployed.manifest, clock,
        message_limit=limit, evidence_url=log_url, retention_seconds=3600,
    ) as (url, relay, _app), httpx.Client(base_url=url, timeout=60) as http:
        slots = SendSlots(tmp_path / "alice-slots.sqlite")
        mailbox, capability = secrets.token_bytes(32), secrets.token_bytes(32)
        blob1 = b"ciphertext one"
        proof1, digest1 = build_send_authorization(alice, tree, group, blob1, clock(), slots, registry=deployment_of(deployed.manifest), message_limit=limit)

        # Accepted: durable, 201.
        r = http.post("/v1/blobs", json=send_body(mailbox, capability, blob1, group, proof1))
        assert r.status_code == 201, r.text
        sent = r.json()
        assert sent["digest"] == digest1.hex() and sent["evidence_id"] is not None
        assert relay.store.exists(sent["id"])

        # Refusals, each with its code.
        _error(http.post("/v1/blobs", json=send_body(mailbox, capability, blob1, group, proof1)), 409, "nullifier_reused")
        _error(http.post("/v1/blobs", json=send_body(mailbox, capability, b"another blob", group, proof1)), 403, "message_mismatch")
        epoch = epoch_at(clock(), 600)
        outsider_tree = LeanIMT(leaves=[alice.commitment, bob.commitment, outsider.commitment])
        blob_x = b"from a non-member"
        stranger = generate_proof(
            outsider, outsider_tree, blob_message(hashlib.sha256(blob_x).digest()), RelayScope.of(deployment_of(deployed.manifest), group, epoch, 0).encode()
        )
        _error(http.post("/v1/blobs", json=send_body(mailbox, capability, blob_x, group, stranger)), 403, "unknown_root")
        blob_o = b"over the limit"
        over = generate_proof(bob, tree, blob_message(hashlib.sha256(blob_o).digest()), RelayScope.of(deployment_of(deployed.manifest), group, epoch, limit).encode())
        _error(http.post("/v1/blobs", json=send_body(mailbox, capability, blob_o, group, over)), 403, "slot_out_of_range")
        _error(http.post("/v1/blobs", json=send_body(mailbox, capability, blob1, group + 1, proof1)), 404, "unknown_group")
        assert relay.store.count() == 1

        # Pickup needs the capability.
        _error(http.get(f"/v1/mailboxes/{mailbox.hex()}"), 403, "forbidden")
        wrong = {"X-Pickup-Capability": secrets.token_bytes(32).hex()}
        _error(http.get(f"/v1/mailboxes/{mailbox.hex()}", headers=wrong), 403, "forbidden")
        right = {"X-Pickup-Capability": capability.hex()}
        r = http.get(f"/v1/mailboxes/{mailbox.hex()}", headers=right)
        assert r.status_code == 200, r.text
        blobs = r.json()["blobs"]
        assert [b["id"] for b in blobs] == [sent["id"]]
        assert base64.b64decode(blobs[0]["blob"]) == blob1

        # Ack deletes (only with the capability).
        _error(http.post(f"/v1/blobs/{sent['id']}/ack", headers=wrong), 403, "forbidden")
        assert relay.store.exists(sent["id"])
        r = http.post(f"/v1/blobs/{sent['id']}/ack", headers=right)
        assert r.status_code == 200 and r.json()["deleted"] is True
        assert not relay.store.exists(sent["id"])
        assert http.get(f"/v1/mailboxes/{mailbox.hex()}", headers=right).json() == {"blobs": []}
        _error(http.post(f"/v1/blobs/{sent['id']}/ack", headers=right), 404, "not_found")

        # A second send takes the client's next slot; the retention purge removes it.
        blob2 = b"ciphertext two"
        proof2, _ = build_send_authorization(alice, tree, group, blob2, clock(), slots, registry=deployment_of(deployed.manifest), message_limit=limit)
        assert slots.used(group, epoch_at(clock(), 600)) == [0, 1]
        r = http.post("/v1/blobs", json=send_body(mailbox, capability, blob2, group, proof2))
        assert r.status_code == 201, r.text
        assert relay.purge() == 0  # not yet expired
        # Reception is kept to the hour (docs/privacy.md): the retention (an hour here) runs
        # from the end of the reception hour, so the blob goes within two hours, never one.
        clock.offset += 2 * 3600
        assert relay.purge() == 1
        assert not relay.store.exists(r.json()["id"])
        assert http.get(f"/v1/mailboxes/{mailbox.hex()}", headers=right).json() == {"blobs": []}

        # Evidence: acceptance x2, rejections x5, consignment, access tracking; signed by the
        # relay's key from its data dir.
        wait_until(lambda: log.size == 9, timeout=30)
        relay_address = Account.from_key(bytes.fromhex((tmp_path / "relay" / KEY_FILE).read_text().strip())).address
        records = [log.entry_at(i).signed for i in range(9)]
        assert all(verify_record_signature(s) and s.record.issuer == relay_address for s in records)
        events = [s.record.event for s in records]
        assert events.count(EventType.SUBMISSION_ACCEPTANCE) == 2
        assert events.count(EventType.CONTENT_CONSIGNMENT) == 1
        assert events.count(EventType.CONTENT_ACCESS_TRACKING) == 1
        reasons = sorted(s.record.reason.value for s in records if s.record.reason is not None)
        assert reasons == sorted(
            [ReasonCode.NULLIFIER_REUSED.value, ReasonCode.MESSAGE_MISMATCH.value, ReasonCode.UNKNOWN_ROOT.value,
             ReasonCode.RATE_LIMITED.value, ReasonCode.SCOPE_MISMATCH.value]
        )
        acceptance = next(s for s in records if s.record.event is EventType.SUBMISSION_ACCEPTANCE)
        consignment = next(s for s in records if s.record.event is EventType.CONTENT_CONSIGNMENT)
        assert consignment.record.links == (acceptance.record.record_hash(),)
        assert acceptance.record.blob_digest == digest1
        slots.close()

    # The connection log holds (hour, ip) only (docs/privacy.md).
    db = sqlite3.connect(tmp_path / "relay" / "access.log.sqlite")
    columns = [row[1] for row in db.execute("PRAGMA table_info(connections)")]
    rows = db.execute("SELECT hour, ip FROM connections").fetchall()
    db.close()
    assert columns == ["hour", "ip"]
    assert rows and {ip for _, ip in rows} == {"127.0.0.1"} and all(h % 3600 == 0 for h, _ in rows)


def test_limits_and_malformed_requests(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    with running_relay(
        tmp_path / "relay", anvil.rpc_url, deployed.manifest, max_body_bytes=2048, rate_limit=8, rate_window=3600
    ) as (url, _relay, _app), httpx.Client(base_url=url, timeout=30) as http:
        _error(http.post("/v1/blobs", content=b"x" * 4096, headers={"content-type": "application/json"}), 413, "too_large")
        _error(http.post("/v1/blobs", content=b"{not json", headers={"content-type": "application/json"}), 422, "malformed")
        _error(http.post("/v1/blobs", json={"mailbox": "00"}), 422, "malformed")
        bad_blob = {"mailbox": "00" * 32, "pickup_hash": "11" * 32, "blob": "***", "group_id": 0, "proof": {}}
        _error(http.post("/v1/blobs", json=bad_blob), 422, "malformed")
        _error(http.get("/v1/mailboxes/zz", headers={"X-Pickup-Capability": "ab" * 32}), 422, "malformed")
        _error(http.post("/v1/blobs/not-an-id/ack", headers={"X-Pickup-Capability": "ab" * 32}), 404, "not_found")
        # A trailing slash is no route: a JSON 404, not a redirect.
        _error(http.get("/v1/mailboxes/%2e%2e%2f", headers={"X-Pickup-Capability": "ab" * 32}), 404, "not_found")
        assert http.get("/v1/health").status_code == 200
        # Reads (mailbox twice, ack, health) are one bucket of 8: 4 so far, 4 more pass, the next is refused.
        assert [http.get("/v1/health").status_code for _ in range(4)] == [200] * 4
        r = http.get("/v1/health")
        _error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("skew", [300, 600])
def test_relay_refuses_a_clock_skew_of_half_an_epoch(tmp_path: Path, skew: int) -> None:
    """Checked when the relay's settings are made, before anything starts (the CLI turns
    the ValueError into one line)."""
    from registry.relay.app import RelaySettings

    with pytest.raises(ValueError, match="less than epoch_length / 2"):
        RelaySettings(data_dir=tmp_path / "relay", rpc_url="http://127.0.0.1:9", epoch_length=600, clock_skew=skew)
    assert not (tmp_path / "relay").exists()
    RelaySettings(data_dir=tmp_path / "relay", rpc_url="http://127.0.0.1:9", epoch_length=600, clock_skew=299)
