"""Delivery-evidence records, signed by relays as EIP-712 typed data.

Events follow the evidence set of ETSI EN 319 522-2 (Electronic Registered Delivery,
semantic contents), with pseudonymous content only. A record carries:

=============  ===============================================================
version        1
chainId        EIP-712 domain chain id (the chain the log is anchored on)
event          an :class:`EventType` name (``"RelayAcceptance"``...)
eventTime      UTC seconds since the epoch (integer)
issuer         the relay's Ethereum address (EIP-55), which signs the record
blobDigest     SHA-256 of the encrypted blob (32 bytes)
links          hashes of earlier records this one follows (0..16, distinct)
reason         a :class:`ReasonCode`, required for rejection/failure events,
               forbidden otherwise (``""`` in the signed struct when absent)
region         relay region tag, ``[a-z0-9][a-z0-9-]{0,31}``
=============  ===============================================================

Nothing else: no identity, commitment, nullifier, mailbox or plaintext-derived
value. (A mailbox digest was considered and left out: a stable digest in a public log
would link every delivery to one recipient.)

Canonical encoding, EIP-712 (https://eips.ethereum.org/EIPS/eip-712):

- domain ``{name: "letro-zkid evidence", version: "1", chainId}``, no
  ``verifyingContract`` (relays sign independently of any contract, and the anchor
  contract may change without invalidating evidence);
- primary type ``EvidenceRecord(uint16 version,string event,uint64 eventTime,address
  issuer,bytes32 blobDigest,bytes32[] links,string reason,string region)``;
- **record hash** = the full EIP-712 signing digest
  ``keccak256(0x19 0x01 || domainSeparator || hashStruct(record))``: the value the
  relay signs, bound to the domain and chain. The **evidence id** is its lower-case
  hex (derived, so identical events are one piece of evidence); the **log entry** is
  the 32-byte record hash, so the RFC 9162 leaf is ``SHA-256(0x00 || record_hash)``.

Signatures are 65-byte ``r || s || v`` secp256k1 signatures over the record hash, ``v``
in {27, 28} and low ``s`` (EIP-2), so each has one encoding. They are made natively
(libsecp256k1 via ``coincurve``, :class:`RecordSigner`), byte for byte what
``eth_account`` makes for the same key and digest (RFC 6979 deterministic nonces).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from coincurve import PrivateKey as _CoincurveKey
from eth_keys.datatypes import Signature as _EcdsaSignature
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from zk import strict_json
from zk.evidence import merkle

RECORD_VERSION = 1
DOMAIN_NAME = "letro-zkid evidence"
DOMAIN_VERSION = "1"
MAX_LINKS = 16
#: Integers stay below 2**53 so that JSON numbers survive JavaScript parsers.
MAX_JSON_INT = (1 << 53) - 1

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_HEX32 = re.compile(r"0x[0-9a-f]{64}")
_HEX_SIG = re.compile(r"0x[0-9a-f]{130}")
_RECORD_KEYS = frozenset(
    {"version", "chainId", "event", "eventTime", "issuer", "blobDigest", "links", "reason", "region"}
)

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
]
RECORD_TYPE = [
    {"name": "version", "type": "uint16"},
    {"name": "event", "type": "string"},
    {"name": "eventTime", "type": "uint64"},
    {"name": "issuer", "type": "address"},
    {"name": "blobDigest", "type": "bytes32"},
    {"name": "links", "type": "bytes32[]"},
    {"name": "reason", "type": "string"},
    {"name": "region", "type": "string"},
]


class RecordError(ValueError):
    """An evidence record, or its JSON or signature, is malformed."""


class EventType(Enum):
    """ETSI EN 319 522-2 evidence events used by the messenger."""

    SUBMISSION_ACCEPTANCE = "SubmissionAcceptance"
    SUBMISSION_REJECTION = "SubmissionRejection"
    RELAY_ACCEPTANCE = "RelayAcceptance"
    RELAY_REJECTION = "RelayRejection"
    RELAY_FAILURE = "RelayFailure"
    CONTENT_CONSIGNMENT = "ContentConsignment"
    CONTENT_CONSIGNMENT_FAILURE = "ContentConsignmentFailure"
    CONTENT_HANDOVER = "ContentHandover"
    CONTENT_ACCESS_TRACKING = "ContentAccessTracking"

    @property
    def needs_reason(self) -> bool:
        """Rejection and failure events must say why; the others must not."""
        return self in _NEGATIVE_EVENTS


_NEGATIVE_EVENTS = frozenset(
    {
        EventType.SUBMISSION_REJECTION,
        EventType.RELAY_REJECTION,
        EventType.RELAY_FAILURE,
        EventType.CONTENT_CONSIGNMENT_FAILURE,
    }
)


class ReasonCode(Enum):
    """Why a submission was rejected or a relay/consignment failed."""

    INVALID_PROOF = "invalid_proof"
    UNKNOWN_ROOT = "unknown_root"
    RATE_LIMITED = "rate_limited"
    NULLIFIER_REUSED = "nullifier_reused"
    MESSAGE_MISMATCH = "message_mismatch"
    SCOPE_MISMATCH = "scope_mismatch"
    TOO_LARGE = "too_large"
    EXPIRED = "expired"
    UNREACHABLE = "unreachable"
    STORAGE_FULL = "storage_full"
    INTERNAL_ERROR = "internal_error"


@functools.lru_cache(maxsize=1024)
def _is_checksummed(address: str) -> bool:
    """EIP-55: ``address`` is its own checksummed form (memoised: a relay has one issuer)."""
    return bool(to_checksum_address(address) == address)


@functools.lru_cache(maxsize=1024)
def _keccak_text(text: str) -> bytes:
    """keccak256 of a UTF-8 string (EIP-712 ``string`` members), memoised: events, reason
    codes and regions are a few fixed strings."""
    return keccak(text.encode())


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_digest(value: object, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise RecordError(f"{name} must be 32 bytes")
    return value


def _hex32(value: bytes) -> str:
    return "0x" + value.hex()


def _parse_hex32(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise RecordError(f"{name} must be 0x followed by 64 lower-case hex digits")
    return bytes.fromhex(value[2:])


@dataclass(frozen=True)
class EvidenceRecord:
    """One evidence record (fields in the module docstring). Validated on construction."""

    chain_id: int
    event: EventType
    event_time: int
    issuer: str
    blob_digest: bytes
    region: str
    links: tuple[bytes, ...] = ()
    reason: ReasonCode | None = None
    version: int = field(default=RECORD_VERSION)

    def __post_init__(self) -> None:
        if self.version != RECORD_VERSION or not _is_int(self.version):
            raise RecordError(f"unsupported record version {self.version!r}")
        if not _is_int(self.chain_id) or not 1 <= self.chain_id <= MAX_JSON_INT:
            raise RecordError("chainId must be an integer in [1, 2^53)")
        if not isinstance(self.event, EventType):
            raise RecordError("event must be an EventType")
        if not _is_int(self.event_time) or not 0 <= self.event_time <= MAX_JSON_INT:
            raise RecordError("eventTime must be UTC seconds in [0, 2^53)")
        if not isinstance(self.issuer, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", self.issuer):
            raise RecordError("issuer must be an Ethereum address")
        if not _is_checksummed(self.issuer):
            raise RecordError("issuer must be an EIP-55 checksummed address")
        if int(self.issuer, 16) == 0:
            raise RecordError("issuer must not be the zero address")
        _check_digest(self.blob_digest, "blobDigest")
        if isinstance(self.links, list):
            object.__setattr__(self, "links", tuple(self.links))
        if not isinstance(self.links, tuple) or len(self.links) > MAX_LINKS:
            raise RecordError(f"links must be a tuple of at most {MAX_LINKS} record hashes")
        for link in self.links:
            _check_digest(link, "link")
        if len(set(self.links)) != len(self.links):
            raise RecordError("links must be distinct")
        if self.reason is not None and not isinstance(self.reason, ReasonCode):
            raise RecordError("reason must be a ReasonCode or None")
        if self.event.needs_reason and self.reason is None:
            raise RecordError(f"{self.event.value} needs a reason code")
        if not self.event.needs_reason and self.reason is not None:
            raise RecordError(f"{self.event.value} must not carry a reason code")
        if not isinstance(self.region, str) or not _REGION.fullmatch(self.region):
            raise RecordError("region must match [a-z0-9][a-z0-9-]{0,31}")

    # --- EIP-712 ---------------------------------------------------------------------

    def typed_data(self) -> dict[str, Any]:
        """The full EIP-712 typed data (``eth_signTypedData_v4`` JSON), bytes as 0x hex."""
        return {
            "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "EvidenceRecord": RECORD_TYPE},
            "primaryType": "EvidenceRecord",
            "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": self.chain_id},
            "message": {
                "version": self.version,
                "event": self.event.value,
                "eventTime": self.event_time,
                "issuer": self.issuer,
                "blobDigest": _hex32(self.blob_digest),
                "links": [_hex32(link) for link in self.links],
                "reason": "" if self.reason is None else self.reason.value,
                "region": self.region,
            },
        }

    def signable(self) -> SignableMessage:
        """The EIP-712 message as ``eth_account`` signs it."""
        return encode_typed_data(full_message=self.typed_data())

    def record_hash(self) -> bytes:
        """``keccak256(0x19 0x01 || domainSeparator || hashStruct(record))`` (EIP-712), by
        the reference encoder (:func:`reference_record_hash`)."""
        return reference_record_hash(self)

    def evidence_id(self) -> str:
        """The record hash in lower-case hex (64 digits, no prefix)."""
        return self.record_hash().hex()

    def leaf_hash(self) -> bytes:
        """The RFC 9162 leaf hash of this record's log entry: ``SHA-256(0x00 || record_hash)``."""
        return merkle.leaf_hash(self.record_hash())

    # --- JSON ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "chainId": self.chain_id,
            "event": self.event.value,
            "eventTime": self.event_time,
            "issuer": self.issuer,
            "blobDigest": _hex32(self.blob_digest),
            "links": [_hex32(link) for link in self.links],
            "reason": None if self.reason is None else self.reason.value,
            "region": self.region,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvidenceRecord:
        """Parse strictly: exactly the keys of :meth:`to_dict`, canonical values."""
        if not isinstance(data, Mapping) or set(data) != _RECORD_KEYS:
            raise RecordError(f"a record has exactly the keys {sorted(_RECORD_KEYS)}")
        for key in ("version", "chainId", "eventTime"):
            if not _is_int(data[key]):
                raise RecordError(f"{key} must be an integer")
        try:
            event = EventType(data["event"])
        except (ValueError, TypeError):
            raise RecordError(f"unknown event {data['event']!r}") from None
        reason: ReasonCode | None = None
        if data["reason"] is not None:
            try:
                reason = ReasonCode(data["reason"])
            except (ValueError, TypeError):
                raise RecordError(f"unknown reason code {data['reason']!r}") from None
        links = data["links"]
        if not isinstance(links, list):
            raise RecordError("links must be a list")
        return cls(
            version=data["version"],
            chain_id=data["chainId"],
            event=event,
            event_time=data["eventTime"],
            issuer=data["issuer"],
            blob_digest=_parse_hex32(data["blobDigest"], "blobDigest"),
            links=tuple(_parse_hex32(link, "link") for link in links),
            reason=reason,
            region=data["region"],
        )

    def to_json(self) -> str:
        """Compact JSON with sorted keys (a stable text; the signed form is EIP-712)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> EvidenceRecord:
        # Duplicate keys, NaN/Infinity, deep nesting and floats refused: none is needed here.
        return cls.from_dict(strict_json.loads(text, floats=False, error=RecordError))


# --- The record hash: a reference and a fast twin ----------------------------------
#
# Both compute EIP-712 ``keccak256(0x19 0x01 || domainSeparator || hashStruct(record))``
# and take the same argument; tests run the same known-answer vectors (ethers.js) over
# both (``RECORD_HASHES``). A divergence could not admit a forged record: the issuer is
# recovered from the signature over the digest the log computes.


def reference_record_hash(record: EvidenceRecord) -> bytes:
    """The record hash by ``eth_account``'s generic EIP-712 encoder (``encode_typed_data``)."""
    message = record.signable()
    return keccak(b"\x19\x01" + message.header + message.body)


def _type_string(name: str, fields: list[dict[str, str]]) -> bytes:
    return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})".encode()


# EIP-712 §Definition of hashStruct / encodeType, built from this module's own type lists
# so the two twins cannot drift apart silently.
_DOMAIN_TYPEHASH = keccak(_type_string("EIP712Domain", EIP712_DOMAIN_TYPE))
_RECORD_TYPEHASH = keccak(_type_string("EvidenceRecord", RECORD_TYPE))
_domain_separators: dict[int, bytes] = {}
_EMPTY_KECCAK = keccak(b"")


def record_hash(record: EvidenceRecord) -> bytes:
    """The record hash by EIP-712 ``encodeData`` of this fixed type, written out (about 10x
    faster than :func:`reference_record_hash`): what the evidence log computes."""
    sep = _domain_separators.get(record.chain_id)
    if sep is None:
        sep = keccak(
            _DOMAIN_TYPEHASH
            + keccak(DOMAIN_NAME.encode())
            + keccak(DOMAIN_VERSION.encode())
            + record.chain_id.to_bytes(32, "big")
        )
        _domain_separators[record.chain_id] = sep
    struct = keccak(
        _RECORD_TYPEHASH
        + record.version.to_bytes(32, "big")
        + _keccak_text(record.event.value)
        + record.event_time.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(record.issuer[2:])
        + record.blob_digest
        + (keccak(b"".join(record.links)) if record.links else _EMPTY_KECCAK)
        + _keccak_text("" if record.reason is None else record.reason.value)
        + _keccak_text(record.region)
    )
    return keccak(b"\x19\x01" + sep + struct)


#: The twins by name (tests run one suite over both).
RECORD_HASHES = {"reference": reference_record_hash, "fast": record_hash}


# --- Signatures ----------------------------------------------------------------------


def _check_signature_encoding(signature: bytes) -> tuple[int, int, int]:
    """Split a 65-byte ``r || s || v`` signature; refuse malleable or out-of-range values."""
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise RecordError("signature must be 65 bytes (r || s || v)")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise RecordError("signature v must be 27 or 28")
    if not 1 <= r < _SECP256K1_N or not 1 <= s <= _SECP256K1_N // 2:
        raise RecordError("signature r/s out of range or high s (EIP-2)")
    return r, s, v


@dataclass(frozen=True)
class SignedRecord:
    """A record and its issuer's EIP-712 signature."""

    record: EvidenceRecord
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.record, EvidenceRecord):
            raise RecordError("record must be an EvidenceRecord")
        _check_signature_encoding(self.signature)

    @functools.cached_property
    def record_hash(self) -> bytes:
        """The record's EIP-712 record hash (the module function), computed once."""
        return record_hash(self.record)

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record.to_dict(), "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedRecord:
        if not isinstance(data, Mapping) or set(data) != {"record", "signature"}:
            raise RecordError("a signed record has exactly the keys record, signature")
        sig = data["signature"]
        if not isinstance(sig, str) or not _HEX_SIG.fullmatch(sig):
            raise RecordError("signature must be 0x followed by 130 lower-case hex digits")
        return cls(EvidenceRecord.from_dict(data["record"]), bytes.fromhex(sig[2:]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedRecord:
        return cls.from_dict(strict_json.loads(text, floats=False, error=RecordError))


class RecordSigner:
    """An issuer's secp256k1 key, parsed once, signing record hashes natively (libsecp256k1
    through ``coincurve``).

    The signature is the one ``eth_account``/``eth_keys`` give for the same key and digest
    (tests compare them): ECDSA with the RFC 6979 deterministic nonce (HMAC-SHA256),
    ``s`` normalised to the lower half (EIP-2; libsecp256k1 always signs low-s), encoded
    ``r || s || v`` with ``v = 27 + recovery id``. Each signature is checked by
    :class:`SignedRecord` (range, low ``s``, ``v``) before it is returned.
    """

    def __init__(self, private_key: bytes | str) -> None:
        if isinstance(private_key, str):
            text = private_key.removeprefix("0x")
            if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
                raise RecordError("a private key is 32 bytes (64 hex digits)")
            private_key = bytes.fromhex(text)
        if not isinstance(private_key, bytes) or len(private_key) != 32:
            raise RecordError("a private key is 32 bytes")
        if not 1 <= int.from_bytes(private_key, "big") < _SECP256K1_N:
            raise RecordError("the private key is out of range")
        self._key = _CoincurveKey(private_key)
        public = self._key.public_key.format(compressed=False)[1:]  # x || y, 64 bytes
        #: The EIP-55 address of the key: the last 20 bytes of keccak256(x || y).
        self.address: str = to_checksum_address(keccak(public)[-20:])

    def sign_hash(self, digest: bytes) -> bytes:
        """The 65-byte ``r || s || v`` signature of a 32-byte digest (no further hashing)."""
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise RecordError("a digest to sign is 32 bytes")
        raw = self._key.sign_recoverable(digest, hasher=None)  # r || s || recovery id (0..3)
        return raw[:64] + bytes([27 + raw[64]])

    def sign(self, record: EvidenceRecord) -> SignedRecord:
        """Sign ``record`` (EIP-712 record hash, :func:`record_hash`); refuses a record whose
        issuer is not this key's address."""
        if record.issuer != self.address:
            raise RecordError("the private key does not belong to the record's issuer")
        digest = record_hash(record)
        signed = SignedRecord(record, self.sign_hash(digest))
        signed.__dict__["record_hash"] = digest  # the cached property below, computed once
        return signed


def sign_record(record: EvidenceRecord, private_key: bytes | str) -> SignedRecord:
    """Sign ``record`` with the issuer's secp256k1 key (EIP-712, :class:`RecordSigner`).

    Refuses a key whose address is not ``record.issuer``. A caller signing many records
    keeps one :class:`RecordSigner` (the key is parsed once).
    """
    return RecordSigner(private_key).sign(record)


def recover_issuer(record_hash: bytes, signature: bytes) -> str:
    """The EIP-55 address that produced ``signature`` over ``record_hash``."""
    r, s, v = _check_signature_encoding(signature)
    try:
        sig = _EcdsaSignature(vrs=(v - 27, r, s))
        address: str = sig.recover_public_key_from_msg_hash(record_hash).to_checksum_address()
    except Exception as exc:  # eth_keys raises several types (BadSignature, ValidationError...)
        raise RecordError(f"signature does not recover: {exc}") from None
    return address


def verify_record_signature(signed: SignedRecord) -> bool:
    """Whether the signature recovers to ``record.issuer``; never raises."""
    try:
        return recover_issuer(signed.record.record_hash(), signed.signature) == signed.record.issuer
    except (RecordError, AttributeError):
        return False
