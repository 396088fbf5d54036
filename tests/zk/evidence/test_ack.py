"""zk.evidence.ack: message/scope definitions, EdDSA-Poseidon acknowledgements against
@zk-kit/eddsa-poseidon (recorded and live), anonymous Semaphore acknowledgements."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk.evidence.ack import (
    ACK_SCOPE_DOMAIN,
    AckError,
    EddsaAcknowledgement,
    SemaphoreAcknowledgement,
    ack_message,
    ack_scope,
    acknowledgement_from_dict,
    prove_acknowledgement,
    sign_acknowledgement,
)
from zk.field import R
from zk.identity import Identity
from zk.relay_scope import MAGIC, RelayScope
from zk.tree import LeanIMT

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "evidence.json").read_text("utf-8"))

RECORD_HASH = bytes.fromhex("ff" * 32)
BLOB = hashlib.sha256(b"an encrypted blob").digest()


def test_ack_message_definition() -> None:
    assert ack_message(RECORD_HASH) == (2**256 - 1) >> 8 < R
    assert ack_message(bytes(32)) == 0
    assert ack_message(bytes(31) + b"\x01") == 0  # the low byte is dropped, by definition
    with pytest.raises(AckError):
        ack_message(bytes(31))


def test_ack_scope_definition() -> None:
    expected = int.from_bytes(hashlib.sha256(b"letro-zkid/evidence/ack-scope/v1" + BLOB).digest(), "big") >> 8
    assert ACK_SCOPE_DOMAIN == b"letro-zkid/evidence/ack-scope/v1"
    assert ack_scope(BLOB) == expected < R
    # Domain separation from the relay send scopes: their first byte is the magic "L".
    assert ack_scope(BLOB).to_bytes(32, "big")[0] == 0
    assert RelayScope(0, 1, 2, 3).encode().to_bytes(32, "big")[:4] == MAGIC
    with pytest.raises(AckError):
        ack_scope(b"short")


@pytest.mark.parametrize("vector", VECTORS["acks"], ids=lambda v: v["privateKey"])
def test_recorded_zk_kit_signatures(vector: dict[str, Any]) -> None:
    record_hash = bytes.fromhex(vector["recordHash"][2:])
    assert str(ack_message(record_hash)) == vector["message"]
    ack = sign_acknowledgement(record_hash, vector["privateKey"])
    data = ack.to_dict()
    assert data["publicKey"] == vector["publicKey"] and data["signature"] == vector["signature"]
    parsed = acknowledgement_from_dict(
        {"type": "eddsa-poseidon", "recordHash": vector["recordHash"],
         "publicKey": vector["publicKey"], "signature": vector["signature"]}
    )
    assert isinstance(parsed, EddsaAcknowledgement) and parsed.verify()
    assert parsed.commitment() == Identity(vector["privateKey"]).commitment


def test_eddsa_ack_rejects_other_records() -> None:
    ack = sign_acknowledgement(RECORD_HASH, "recipient")
    assert ack.verify()
    assert not dataclasses.replace(ack, record_hash=bytes(32)).verify()
    other = sign_acknowledgement(RECORD_HASH, "someone else")
    assert not dataclasses.replace(ack, public_key=other.public_key).verify()
    assert not dataclasses.replace(ack, signature=other.signature).verify()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(type="eddsa"),
        lambda d: d.pop("publicKey"),
        lambda d: d.update(extra=1),
        lambda d: d.update(recordHash=d["recordHash"][2:]),
        lambda d: d.update(publicKey=[d["publicKey"][0], str(int(d["publicKey"][1]) + 1)]),  # off the curve
        lambda d: d.update(publicKey=["0" + d["publicKey"][0], d["publicKey"][1]]),
        lambda d: d.update(publicKey=[int(d["publicKey"][0]), d["publicKey"][1]]),
        lambda d: d["signature"].update(S=str(R)),
        lambda d: d["signature"].update(extra="1"),
        lambda d: d.update(signature=None),
    ],
)
def test_strict_eddsa_json(mutate: Any) -> None:
    data = sign_acknowledgement(RECORD_HASH, "recipient").to_dict()
    mutate(data)
    with pytest.raises(AckError):
        acknowledgement_from_dict(data)


def test_unknown_kind() -> None:
    for bad in [None, [], {"type": "x"}, {}]:
        with pytest.raises(AckError):
            acknowledgement_from_dict(bad)


@needs_node
def test_live_zk_kit_verifies_python_acks() -> None:
    acks = [sign_acknowledgement(bytes([i]) * 32, f"recipient-{i}") for i in range(3)]
    cases = []
    for ack in acks:
        d = ack.to_dict()
        cases.append({"message": str(ack_message(ack.record_hash)), "signature": d["signature"], "publicKey": d["publicKey"]})
        cases.append({"message": str(ack_message(ack.record_hash) + 1), "signature": d["signature"], "publicKey": d["publicKey"]})
    assert run_js("evidence_live.mjs", {"acks": cases})["acks"] == [True, False] * 3


# --- Anonymous acknowledgements (real Semaphore proofs) ------------------------------


@pytest.fixture(scope="module")
def semaphore_ack() -> SemaphoreAcknowledgement:
    members = [Identity(f"ack-member-{i}") for i in range(3)]
    group = LeanIMT(leaves=[m.commitment for m in members])
    return prove_acknowledgement(members[2], group, RECORD_HASH, BLOB)


def test_semaphore_ack_verifies(semaphore_ack: SemaphoreAcknowledgement) -> None:
    semaphore_ack.check(BLOB)
    assert semaphore_ack.proof.message == ack_message(RECORD_HASH)
    assert semaphore_ack.proof.scope == ack_scope(BLOB)
    again = acknowledgement_from_dict(json.loads(json.dumps(semaphore_ack.to_dict())))
    assert again == semaphore_ack


def test_semaphore_ack_is_bound_to_record_and_blob(semaphore_ack: SemaphoreAcknowledgement) -> None:
    with pytest.raises(AckError, match="scope"):
        semaphore_ack.check(bytes(32))
    with pytest.raises(AckError, match="message"):
        dataclasses.replace(semaphore_ack, record_hash=bytes(32)).check(BLOB)
    points = list(semaphore_ack.proof.points)
    points[6], points[7] = points[7], points[6]
    forged = dataclasses.replace(semaphore_ack, proof=dataclasses.replace(semaphore_ack.proof, points=tuple(points)))
    with pytest.raises(AckError, match="verify"):
        forged.check(BLOB)
    with pytest.raises(AckError, match="verify"):
        semaphore_ack.check(BLOB, verifier=lambda proof: False)


def test_strict_semaphore_json(semaphore_ack: SemaphoreAcknowledgement) -> None:
    data = semaphore_ack.to_dict()
    for bad in [{**data, "proof": {**data["proof"], "nullifier": "0" + data["proof"]["nullifier"]}},
                {**data, "proof": None}, {**data, "extra": 1}, {k: v for k, v in data.items() if k != "proof"}]:
        with pytest.raises(AckError):
            acknowledgement_from_dict(bad)
