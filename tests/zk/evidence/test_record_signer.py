"""zk.evidence.record.RecordSigner: native (libsecp256k1) signatures byte-identical to
eth_account's and to eth_keys' pure-Python signer (RFC 6979 nonces, low s, v = 27/28)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_keys.main import KeyAPI
from eth_keys.backends.native.main import NativeECCBackend
from hypothesis import given, settings
from hypothesis import strategies as st

from zk.evidence.record import (
    EventType,
    EvidenceRecord,
    RecordError,
    RecordSigner,
    recover_issuer,
    record_hash,
    sign_record,
)

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PURE = KeyAPI(NativeECCBackend())  # eth_keys' pure-Python ECDSA: independent of libsecp256k1

# Known answer: eth_account's signature (eth_keys, RFC 6979) of this digest with this key
# (the key of the eth-account documentation), recorded once.
KAT_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KAT_DIGEST = bytes.fromhex("1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8")


def _eth_account_signature(key: bytes | str, digest: bytes) -> bytes:
    return bytes(Account.unsafe_sign_hash(digest, key).signature)


def test_known_answer_matches_eth_account_and_pure_python() -> None:
    signer = RecordSigner(KAT_KEY)
    assert signer.address == Account.from_key(KAT_KEY).address
    ours = signer.sign_hash(KAT_DIGEST)
    assert ours == _eth_account_signature(KAT_KEY, KAT_DIGEST)
    pure = PURE.PrivateKey(bytes.fromhex(KAT_KEY[2:])).sign_msg_hash(KAT_DIGEST)
    assert ours == pure.to_bytes()[:64] + bytes([27 + pure.v])
    assert ours.hex() == KAT_SIGNATURE


KAT_SIGNATURE = (
    "bc81bfc04b658485b9820cf4fac760c84f0fc628da21c9e64ed8aaede215e633"
    "76cc1bfb23f9869c5b71a4069b48fce3ab0caaebc6bfb7a81cb12ac3b9b2f7b11c"
)


@settings(max_examples=40, deadline=None)
@given(key=st.integers(1, N - 1), digest=st.binary(min_size=32, max_size=32))
def test_same_bytes_as_eth_account_for_any_key_and_digest(key: int, digest: bytes) -> None:
    raw = key.to_bytes(32, "big")
    ours = RecordSigner(raw).sign_hash(digest)
    assert ours == _eth_account_signature(raw, digest)
    assert ours[64] in (27, 28)
    assert int.from_bytes(ours[32:64], "big") <= N // 2  # low s (EIP-2)


def test_record_signature_recovers_and_equals_the_eth_account_path() -> None:
    key = b"\x42" * 32
    signer = RecordSigner(key)
    rec = EvidenceRecord(
        chain_id=31337, event=EventType.RELAY_ACCEPTANCE, event_time=1_700_000_000,
        issuer=signer.address, blob_digest=b"\x07" * 32, region="local",
    )
    signed = signer.sign(rec)
    assert signed == sign_record(rec, key) == sign_record(rec, "0x" + key.hex())
    assert signed.signature == _eth_account_signature(key, record_hash(rec))
    assert recover_issuer(record_hash(rec), signed.signature) == signer.address


@pytest.mark.parametrize("key", [b"", b"\x00" * 32, N.to_bytes(32, "big"), b"\x01" * 31, "0x12", "zz" * 32])
def test_bad_keys_are_refused(key: bytes | str) -> None:
    with pytest.raises(RecordError):
        RecordSigner(key)


def test_wrong_issuer_and_digest_length_are_refused() -> None:
    signer = RecordSigner(b"\x42" * 32)
    rec = EvidenceRecord(
        chain_id=1, event=EventType.RELAY_ACCEPTANCE, event_time=0,
        issuer=RecordSigner(b"\x43" * 32).address, blob_digest=b"\x07" * 32, region="local",
    )
    with pytest.raises(RecordError):
        signer.sign(rec)
    with pytest.raises(RecordError):
        signer.sign_hash(b"\x01" * 31)
