"""zk.evidence.record: EIP-712 encoding and signatures against ethers (recorded and
live), strict JSON, field rules, tamper and malleability rejection."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk.evidence import merkle
from zk.evidence.record import (
    RECORD_HASHES,
    EventType,
    EvidenceRecord,
    ReasonCode,
    RecordError,
    SignedRecord,
    recover_issuer,
    sign_record,
    verify_record_signature,
)

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "evidence.json").read_text("utf-8"))
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

KEY = b"\x42" * 32
ISSUER = Account.from_key(KEY).address


def record(**changes: Any) -> EvidenceRecord:
    base: dict[str, Any] = dict(
        chain_id=31337,
        event=EventType.RELAY_ACCEPTANCE,
        event_time=1_700_000_000,
        issuer=ISSUER,
        blob_digest=bytes(range(32)),
        region="eu-west",
        links=(b"\x11" * 32,),
    )
    base.update(changes)
    return EvidenceRecord(**base)


def from_typed(typed: dict[str, Any]) -> EvidenceRecord:
    m = typed["message"]
    return EvidenceRecord(
        chain_id=typed["domain"]["chainId"],
        event=EventType(m["event"]),
        event_time=m["eventTime"],
        issuer=m["issuer"],
        blob_digest=bytes.fromhex(m["blobDigest"][2:]),
        links=tuple(bytes.fromhex(x[2:]) for x in m["links"]),
        reason=ReasonCode(m["reason"]) if m["reason"] else None,
        region=m["region"],
    )


@pytest.mark.parametrize("vector", VECTORS["records"], ids=lambda v: v["typedData"]["message"]["event"])
def test_recorded_ethers_vectors(vector: dict[str, Any]) -> None:
    rec = from_typed(vector["typedData"])
    assert rec.typed_data() == vector["typedData"]
    assert "0x" + rec.record_hash().hex() == vector["recordHash"]
    assert rec.evidence_id() == vector["recordHash"][2:]
    signed = sign_record(rec, vector["privateKey"])
    # RFC 6979 signatures are deterministic: the same bytes as ethers.
    assert "0x" + signed.signature.hex() == vector["signature"]
    assert verify_record_signature(signed)


@pytest.mark.parametrize("twin", sorted(RECORD_HASHES))
@pytest.mark.parametrize("vector", VECTORS["records"], ids=lambda v: v["typedData"]["message"]["event"])
def test_record_hash_twins_on_the_ethers_vectors(twin: str, vector: dict[str, Any]) -> None:
    """The reference and the fast record hash give ethers' record hash on every vector."""
    rec = from_typed(vector["typedData"])
    assert "0x" + RECORD_HASHES[twin](rec).hex() == vector["recordHash"]


def test_leaf_is_the_record_hash() -> None:
    rec = record()
    assert rec.leaf_hash() == merkle.leaf_hash(rec.record_hash())


def test_sign_verify_and_json_round_trip() -> None:
    signed = sign_record(record(), KEY)
    assert verify_record_signature(signed)
    assert recover_issuer(signed.record.record_hash(), signed.signature) == ISSUER
    assert SignedRecord.from_json(signed.to_json()) == signed
    assert EvidenceRecord.from_json(signed.record.to_json()) == signed.record
    with pytest.raises(RecordError):
        sign_record(record(), b"\x43" * 32)  # not the issuer's key


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1},
        {"event": EventType.CONTENT_CONSIGNMENT},
        {"event_time": 1_700_000_001},
        {"blob_digest": bytes(32)},
        {"region": "eu-east"},
        {"links": ()},
        {"links": (b"\x11" * 32, b"\x12" * 32)},
        {"event": EventType.RELAY_FAILURE, "reason": ReasonCode.UNREACHABLE},
    ],
)
def test_any_field_change_breaks_the_signature(change: dict[str, Any]) -> None:
    signed = sign_record(record(), KEY)
    other = dataclasses.replace(signed.record, **change)
    assert other.record_hash() != signed.record.record_hash()
    assert not verify_record_signature(SignedRecord(other, signed.signature))


def test_issuer_change_breaks_the_signature() -> None:
    signed = sign_record(record(), KEY)
    other = dataclasses.replace(signed.record, issuer=Account.from_key(b"\x43" * 32).address)
    assert not verify_record_signature(SignedRecord(other, signed.signature))


@settings(max_examples=40, deadline=None)
@given(position=st.integers(0, 63), bit=st.integers(0, 7))
def test_signature_bit_flips_fail(position: int, bit: int) -> None:
    signed = sign_record(record(), KEY)
    raw = bytearray(signed.signature)
    raw[position] ^= 1 << bit
    try:
        tampered = SignedRecord(signed.record, bytes(raw))
    except RecordError:
        return  # refused as malformed (high s, r/s out of range)
    assert not verify_record_signature(tampered)


def test_malleable_signatures_are_refused() -> None:
    signed = sign_record(record(), KEY)
    r, s, v = signed.signature[:32], int.from_bytes(signed.signature[32:64], "big"), signed.signature[64]
    twin = r + (N - s).to_bytes(32, "big") + bytes([55 - v])  # the other valid (r, s) encoding
    with pytest.raises(RecordError):
        SignedRecord(signed.record, twin)
    for bad in [signed.signature[:64] + b"\x00", signed.signature[:64] + b"\x01", signed.signature[:64],
                bytes(32) + signed.signature[32:], b"\xff" * 32 + signed.signature[32:]]:
        with pytest.raises(RecordError):
            SignedRecord(signed.record, bad)


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"chain_id": 0},
        {"chain_id": 2**53},
        {"chain_id": True},
        {"event": "RelayAcceptance"},
        {"event_time": -1},
        {"event_time": 2**53},
        {"event_time": 1.5},
        {"issuer": ISSUER.lower()},
        {"issuer": "0x" + "00" * 20},
        {"issuer": ISSUER[:-1]},
        {"blob_digest": bytes(31)},
        {"blob_digest": "00" * 32},
        {"links": (b"\x11" * 32, b"\x11" * 32)},
        {"links": tuple(bytes([i]) * 32 for i in range(17))},
        {"links": (b"\x11" * 31,)},
        {"reason": ReasonCode.RATE_LIMITED},  # RelayAcceptance must not carry a reason
        {"event": EventType.SUBMISSION_REJECTION},  # ... and a rejection needs one
        {"event": EventType.RELAY_REJECTION, "reason": "rate_limited"},
        {"region": ""},
        {"region": "EU"},
        {"region": "-eu"},
        {"region": "eu west"},
        {"region": "a" * 33},
    ],
)
def test_invalid_records(change: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        record(**change)


def test_reason_rules_cover_every_event() -> None:
    for event in EventType:
        if event.needs_reason:
            assert record(event=event, reason=ReasonCode.EXPIRED).reason is ReasonCode.EXPIRED
        else:
            assert record(event=event).reason is None
    assert {e.value for e in EventType} >= {
        "SubmissionAcceptance", "SubmissionRejection", "RelayAcceptance", "RelayRejection", "RelayFailure",
        "ContentConsignment", "ContentConsignmentFailure", "ContentHandover", "ContentAccessTracking",
    }


def test_record_carries_no_identity_fields() -> None:
    names = {f.name for f in dataclasses.fields(EvidenceRecord)}
    assert names == {"version", "chain_id", "event", "event_time", "issuer", "blob_digest", "links", "reason", "region"}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("region"),
        lambda d: d.update(extra=1),
        lambda d: d.update(version="1"),
        lambda d: d.update(eventTime=1.0),
        lambda d: d.update(eventTime=True),
        lambda d: d.update(blobDigest=d["blobDigest"].upper().replace("0X", "0x")),
        lambda d: d.update(blobDigest=d["blobDigest"][2:]),
        lambda d: d.update(links="0x" + "11" * 32),
        lambda d: d.update(links=["0x" + "11" * 31]),
        lambda d: d.update(reason=""),
        lambda d: d.update(reason="not_a_reason"),
        lambda d: d.update(event="relayAcceptance"),
        lambda d: d.update(event=None),
    ],
)
def test_strict_json(mutate: Any) -> None:
    data = record().to_dict()
    mutate(data)
    with pytest.raises(RecordError):
        EvidenceRecord.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{",
        '{"version": 1, "version": 1}',
        '{"version": NaN}',
        '{"record": {}, "signature": "0x00"}',
        b"\xff",
    ],
)
def test_bad_json_texts(text: str | bytes) -> None:
    with pytest.raises(RecordError):
        EvidenceRecord.from_json(text)
    with pytest.raises(RecordError):
        SignedRecord.from_json(text)


def test_duplicate_keys_in_record_json() -> None:
    text = record().to_json()
    with pytest.raises(RecordError):
        EvidenceRecord.from_json(text[:-1] + ',"region":"us"}')


def test_signature_json_is_canonical() -> None:
    data = sign_record(record(), KEY).to_dict()
    for bad in [data["signature"].upper().replace("0X", "0x"), data["signature"][2:], data["signature"] + "00"]:
        with pytest.raises(RecordError):
            SignedRecord.from_dict({**data, "signature": bad})


@needs_node
def test_live_ethers_agrees() -> None:
    good = sign_record(record(event=EventType.CONTENT_HANDOVER, links=()), KEY)
    failure = sign_record(
        record(event=EventType.CONTENT_CONSIGNMENT_FAILURE, reason=ReasonCode.STORAGE_FULL, region="x9"), KEY
    )
    forged = SignedRecord(dataclasses.replace(good.record, event_time=good.record.event_time + 1), good.signature)
    cases = [good, failure, forged]
    result = run_js(
        "evidence_live.mjs",
        {
            "typed": [{"typedData": c.record.typed_data(), "signature": "0x" + c.signature.hex()} for c in cases],
            "sign": [{"privateKey": "0x" + KEY.hex(), "typedData": c.record.typed_data()} for c in cases[:2]],
        },
    )
    for case, js in zip(cases, result["typed"]):
        assert js["hash"] == "0x" + case.record.record_hash().hex()
    assert [js["recovered"] == ISSUER for js in result["typed"]] == [True, True, False]
    assert [verify_record_signature(c) for c in cases] == [True, True, False]
    assert result["sign"] == ["0x" + c.signature.hex() for c in cases[:2]]
