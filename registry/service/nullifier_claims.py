"""Nullifier claims by relays: the home registry as the nullifier authority of its groups.

A relay that verifies proofs itself (local mode) claims each proof's nullifier at the
group's home registry (``POST /v1/nullifiers/claim``, docs/api.md), so a proof spent at
any relay is refused at every other relay and at ``POST /v1/authorize``: both write the
registry's one nullifier store (:class:`registry.service.authorization.SqlNullifierStore`).

Each request is signed by a relay key the registry trusts (the evidence log's relay keys,
docs/evidence.md "Who may append"). The envelope (docs/api.md "Claim envelope") is an
EIP-191 ``personal_sign`` signature over :func:`envelope_text`: the registry's chain id
and contract (a request for one deployment is not valid at another), the relay's
address, a timestamp, a random nonce and the SHA-256 of the exact body bytes. The
registry accepts it within ``window`` seconds of its clock and each (relay, nonce) once
(kept for as long as its timestamp is fresh), so a captured request cannot be replayed.

A claim is idempotent for the relay that made it: the store records the claiming relay's
address with the nullifier, and the same relay claiming the same (group, nullifier,
epoch) again is answered ``claimed`` again. A relay that lost an answer therefore retries
with a new envelope and learns whether it won; any other claimer gets ``reused``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from eth_utils.crypto import keccak

from registry.errors import RegistryError
from registry.evidence.admission import relay_address
from zk.evidence.record import RecordError, RecordSigner, recover_issuer
from zk.relay_scope import RegistryRef

#: Headers of the claim envelope.
RELAY_HEADER = "X-Zkid-Relay"
TIME_HEADER = "X-Zkid-Timestamp"
NONCE_HEADER = "X-Zkid-Nonce"
SIGNATURE_HEADER = "X-Zkid-Signature"

#: At most this many claims in one request.
MAX_CLAIMS = 256
#: Default freshness window of an envelope, seconds either side of the registry's clock.
DEFAULT_WINDOW = 60

_NONCE = re.compile(r"[0-9a-f]{32}")
_SIGNATURE = re.compile(r"0x[0-9a-f]{130}")
_TIME = re.compile(r"[0-9]{1,12}")


class ClaimAuthError(RegistryError):
    """A refused envelope: a machine-readable ``code`` (401, or 403 ``unknown_relay``: the
    one table, registry/errors.py) and ``detail``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)
        self.detail = detail


@dataclass(frozen=True)
class Envelope:
    """The authentication headers of one claim request."""

    relay: str
    timestamp: int
    nonce: str
    signature: str

    def headers(self) -> dict[str, str]:
        return {
            RELAY_HEADER: self.relay,
            TIME_HEADER: str(self.timestamp),
            NONCE_HEADER: self.nonce,
            SIGNATURE_HEADER: self.signature,
        }


def envelope_text(deployment: RegistryRef, relay: str, timestamp: int, nonce: str, body: bytes) -> str:
    """The text a relay signs (EIP-191 ``personal_sign``); docs/api.md "Claim envelope"."""
    return (
        "letro-zkid nullifier claim v1\n"
        f"chain: {deployment.chain_id}\n"
        f"contract: {deployment.contract}\n"
        f"relay: {relay}\n"
        f"time: {timestamp}\n"
        f"nonce: {nonce}\n"
        f"body: {hashlib.sha256(body).hexdigest()}"
    )


def eip191_hash(text: str) -> bytes:
    """``keccak256("\\x19Ethereum Signed Message:\\n" || len || text)`` (EIP-191 version 0x45)."""
    data = text.encode("utf-8")
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode("ascii") + data)


def sign_envelope(signer: RecordSigner, deployment: RegistryRef, body: bytes, timestamp: int, nonce: str) -> Envelope:
    """The envelope of ``body`` signed by the relay key ``signer``."""
    text = envelope_text(deployment, signer.address, timestamp, nonce, body)
    signature = "0x" + signer.sign_hash(eip191_hash(text)).hex()
    return Envelope(signer.address, timestamp, nonce, signature)


class ClaimAuthenticator:
    """Checks envelopes for one deployment: a trusted relay key (``trusted()``), a fresh
    timestamp, a nonce not seen while fresh, a signature by that key over the body."""

    def __init__(
        self,
        deployment: RegistryRef,
        trusted: Callable[[], Collection[str]],
        *,
        window: int = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deployment = deployment
        self._trusted = trusted
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], int] = {}  # (relay, nonce) -> timestamp
        self._lock = threading.Lock()

    def check(self, headers: Mapping[str, str], body: bytes) -> str:
        """The relay address of a valid envelope, else :class:`ClaimAuthError`."""
        raw = [headers.get(h) for h in (RELAY_HEADER, TIME_HEADER, NONCE_HEADER, SIGNATURE_HEADER)]
        if any(v is None for v in raw):
            raise ClaimAuthError("unsigned_request", "a claim must carry the relay's signed envelope headers")
        relay_raw, time_raw, nonce, signature = (str(v) for v in raw)
        try:
            relay = relay_address(relay_raw)
        except ValueError:
            raise ClaimAuthError("bad_envelope", f"{RELAY_HEADER} is not an address") from None
        if not _TIME.fullmatch(time_raw) or not _NONCE.fullmatch(nonce) or not _SIGNATURE.fullmatch(signature):
            raise ClaimAuthError("bad_envelope", "timestamp, nonce (16 bytes hex) or signature malformed")
        if relay not in set(self._trusted()):
            raise ClaimAuthError("unknown_relay", "this relay key is not trusted by the registry")
        timestamp = int(time_raw)
        now = self._clock()
        if abs(now - timestamp) > self.window:
            raise ClaimAuthError("stale_request", f"the envelope's time is more than {self.window} s off")
        text = envelope_text(self.deployment, relay, timestamp, nonce, body)
        try:
            signer = recover_issuer(eip191_hash(text), bytes.fromhex(signature[2:]))
        except RecordError:
            signer = None
        if signer != relay:
            raise ClaimAuthError("envelope_signature_invalid", "the envelope's signature is not the relay's")
        with self._lock:
            self._forget(now)
            if (relay, nonce) in self._seen:
                raise ClaimAuthError("replayed_request", "this envelope was used already")
            self._seen[(relay, nonce)] = timestamp
        return relay

    def _forget(self, now: float) -> None:
        """Drop nonces whose timestamp can no longer pass the window (the lock held)."""
        old = [k for k, t in self._seen.items() if t < now - self.window]
        for k in old:
            del self._seen[k]
