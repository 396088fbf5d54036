"""The claim envelope of POST /v1/nullifiers/claim (registry/service/nullifier_claims.py):
EIP-191 as eth_account signs it, and every refusal of the authenticator."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from registry.service.nullifier_claims import (
    NONCE_HEADER,
    RELAY_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    ClaimAuthenticator,
    ClaimAuthError,
    eip191_hash,
    envelope_text,
    sign_envelope,
)
from zk.evidence.record import RecordSigner
from zk.relay_scope import RegistryRef

KEY = bytes.fromhex("4c0883a69102937d6231471b5decb208" "5ec3d62ddd1ba4e6dde8d2b2f0b9d3c1")
OTHER = bytes.fromhex("11" * 32)
HOME = RegistryRef(31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")
BODY = b'{"claims":[{"group_id":0,"nullifier":"1","epoch":5}]}'
NONCE = "00" * 16


def test_envelope_is_eip191_personal_sign_as_eth_account_makes_it() -> None:
    signer = RecordSigner(KEY)
    envelope = sign_envelope(signer, HOME, BODY, 1_700_000_000, NONCE)
    text = envelope_text(HOME, signer.address, 1_700_000_000, NONCE, BODY)
    expected = Account.sign_message(encode_defunct(text=text), private_key=KEY)
    assert envelope.signature == "0x" + bytes(expected.signature).hex()
    assert eip191_hash(text) == bytes(expected.message_hash)
    assert envelope.relay == Account.from_key(KEY).address
    # The text binds the deployment, the relay, the time, the nonce and the body's SHA-256.
    assert text == (
        "letro-zkid nullifier claim v1\nchain: 31337\ncontract: 0x5fbdb2315678afecb367f032d93f642f64180aa3\n"
        f"relay: {signer.address}\ntime: 1700000000\nnonce: {NONCE}\n"
        "body: " + hashlib.sha256(BODY).hexdigest()
    )


def _auth(now: float = 1_700_000_000.0, trusted: tuple[str, ...] | None = None) -> ClaimAuthenticator:
    keys = trusted if trusted is not None else (RecordSigner(KEY).address,)
    return ClaimAuthenticator(HOME, lambda: keys, window=60, clock=lambda: now)


def _headers(key: bytes = KEY, at: int = 1_700_000_000, nonce: str = NONCE, body: bytes = BODY, home: RegistryRef = HOME) -> dict[str, str]:
    return sign_envelope(RecordSigner(key), home, body, at, nonce).headers()


def _refused(auth: ClaimAuthenticator, headers: dict[str, str], body: bytes = BODY) -> tuple[int, str]:
    with pytest.raises(ClaimAuthError) as info:
        auth.check(headers, body)
    return info.value.status, info.value.code


def test_a_valid_envelope_names_its_relay_once() -> None:
    auth = _auth()
    assert auth.check(_headers(), BODY) == RecordSigner(KEY).address
    assert _refused(auth, _headers()) == (401, "replayed_request")
    assert auth.check(_headers(nonce="01" * 16), BODY) == RecordSigner(KEY).address  # a retry: new nonce


def test_refusals() -> None:
    auth = _auth()
    good = _headers()
    unsigned = {k: v for k, v in good.items() if k != SIGNATURE_HEADER}
    assert _refused(auth, unsigned) == (401, "unsigned_request")
    assert _refused(auth, {}) == (401, "unsigned_request")
    assert _refused(auth, {**good, RELAY_HEADER: "0x1234"}) == (401, "bad_envelope")
    assert _refused(auth, {**good, NONCE_HEADER: "xyz"}) == (401, "bad_envelope")
    assert _refused(auth, {**good, TIME_HEADER: "-5"}) == (401, "bad_envelope")
    assert _refused(auth, _headers(key=OTHER)) == (403, "unknown_relay")
    assert _refused(auth, _headers(at=1_700_000_000 - 61)) == (401, "stale_request")
    assert _refused(auth, _headers(at=1_700_000_000 + 61)) == (401, "stale_request")
    # Another body, another deployment, another key claiming to be the relay.
    assert _refused(auth, good, BODY + b" ") == (401, "envelope_signature_invalid")
    other_home = RegistryRef(31338, HOME.contract)
    assert _refused(auth, _headers(home=other_home, nonce="02" * 16)) == (401, "envelope_signature_invalid")
    forged = {**_headers(key=OTHER, nonce="03" * 16), RELAY_HEADER: RecordSigner(KEY).address}
    assert _refused(auth, forged) == (401, "envelope_signature_invalid")
    # Refused envelopes did not use the nonce up; an untrusted list refuses everyone.
    assert auth.check(good, BODY) == RecordSigner(KEY).address
    assert _refused(_auth(trusted=()), _headers(nonce="04" * 16)) == (403, "unknown_relay")


def test_nonces_are_forgotten_once_stale() -> None:
    now = [1_700_000_000.0]
    auth = ClaimAuthenticator(HOME, lambda: (RecordSigner(KEY).address,), window=60, clock=lambda: now[0])
    auth.check(_headers(), BODY)
    now[0] += 200
    auth.check(_headers(at=1_700_000_200, nonce="05" * 16), BODY)
    assert len(auth._seen) == 1
