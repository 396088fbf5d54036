"""Recipient acknowledgements of an evidence record.

An acknowledgement refers to one record by its record hash (:mod:`zk.evidence.record`)
and comes in two kinds:

- ``eddsa-poseidon``: the recipient's ZK-ID key signs ``ack_message(record_hash)``
  with EdDSA-Poseidon (:mod:`zk.eddsa_poseidon`, zk-kit's scheme). It names the
  recipient: the sender can compare ``Poseidon2(A.x, A.y)`` with the recipient's
  Semaphore commitment.
- ``semaphore``: an anonymous Semaphore v4 proof (:mod:`zk.proof`) with
  ``message = ack_message(record_hash)`` and ``scope = ack_scope(blob_digest)``: some
  member of the proof's group acknowledged, and the nullifier
  ``Poseidon2(hash(scope), secret)`` lets each member acknowledge a blob once.

Field encodings, chosen so that nothing is ever reduced silently:

- ``ack_message(record_hash) = int(record_hash, big-endian) >> 8``: 248 bits, below
  the BN254 scalar field, so EdDSA-Poseidon signs it as is; it is the same truncation
  Semaphore applies to messages (``keccak256(x) >> 8``). Dropping 8 bits of a keccak
  digest leaves 124-bit collision resistance.
- ``ack_scope(blob_digest) = int(SHA-256("letro-zkid/evidence/ack-scope/v1" ||
  blob_digest), big-endian) >> 8``: domain-separated from the relay send scopes of
  :mod:`zk.relay_scope` (those begin with the byte ``0x4c``, ``"L"``; these with
  ``0x00``), so an acknowledgement never spends a send slot or the reverse.

Acknowledgements live in evidence bundles only, never in the public log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zk import babyjubjub as bj
from zk import eddsa_poseidon
from zk.field import FieldError, parse_decimal
from zk.poseidon import poseidon2
from zk.proof import ProofError as SemaphoreProofError
from zk.proof import IdentityLike, SemaphoreProof, generate_proof, verify_proof
from zk.tree import LeanIMT, MerkleProof

ACK_SCOPE_DOMAIN = b"letro-zkid/evidence/ack-scope/v1"
KIND_EDDSA = "eddsa-poseidon"
KIND_SEMAPHORE = "semaphore"


class AckError(ValueError):
    """An acknowledgement is malformed or does not verify."""


def _check_digest(value: object, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise AckError(f"{name} must be 32 bytes")
    return value


def ack_message(record_hash: bytes) -> int:
    """The field element an acknowledgement signs or proves: ``int(record_hash) >> 8``."""
    return int.from_bytes(_check_digest(record_hash, "record hash"), "big") >> 8


def ack_scope(blob_digest: bytes) -> int:
    """The Semaphore scope of anonymous acknowledgements of one blob (module docstring)."""
    digest = hashlib.sha256(ACK_SCOPE_DOMAIN + _check_digest(blob_digest, "blob digest")).digest()
    return int.from_bytes(digest, "big") >> 8


def _hex32(value: bytes) -> str:
    return "0x" + value.hex()


def _parse_hex32(value: object, name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise AckError(f"{name} must be 0x followed by 64 lower-case hex digits")
    digits = value[2:]
    if any(c not in "0123456789abcdef" for c in digits):
        raise AckError(f"{name} must be 0x followed by 64 lower-case hex digits")
    return bytes.fromhex(digits)


def _parse_point(value: object, name: str) -> bj.Point:
    if not isinstance(value, list) or len(value) != 2:
        raise AckError(f"{name} must be a list of two decimal strings")
    try:
        point = (parse_decimal(value[0], f"{name}.x"), parse_decimal(value[1], f"{name}.y"))
    except FieldError as exc:
        raise AckError(str(exc)) from None
    if not bj.in_curve(point):
        raise AckError(f"{name} is not a Baby Jubjub point")
    return point


@dataclass(frozen=True)
class EddsaAcknowledgement:
    """The recipient's EdDSA-Poseidon signature of ``ack_message(record_hash)``."""

    record_hash: bytes
    public_key: bj.Point
    signature: eddsa_poseidon.Signature

    def __post_init__(self) -> None:
        _check_digest(self.record_hash, "record hash")
        if not bj.in_curve(self.public_key):
            raise AckError("public key is not a Baby Jubjub point")
        if not isinstance(self.signature, eddsa_poseidon.Signature):
            raise AckError("signature must be an EdDSA-Poseidon Signature")

    def commitment(self) -> int:
        """The Semaphore commitment of the signing identity, ``Poseidon2(A.x, A.y)``."""
        return poseidon2(self.public_key[0], self.public_key[1])

    def verify(self) -> bool:
        """EdDSA-Poseidon verification (zk-kit ``verifySignature``); never raises."""
        return eddsa_poseidon.verify_signature(ack_message(self.record_hash), self.signature, self.public_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": KIND_EDDSA,
            "recordHash": _hex32(self.record_hash),
            "publicKey": [str(c) for c in self.public_key],
            "signature": {"R8": [str(c) for c in self.signature.R8], "S": str(self.signature.S)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EddsaAcknowledgement:
        if set(data) != {"type", "recordHash", "publicKey", "signature"} or data["type"] != KIND_EDDSA:
            raise AckError("an eddsa-poseidon acknowledgement has keys type, recordHash, publicKey, signature")
        sig = data["signature"]
        if not isinstance(sig, Mapping) or set(sig) != {"R8", "S"}:
            raise AckError("signature has exactly the keys R8, S")
        try:
            s = parse_decimal(sig["S"], "S", bj.SUBORDER)
        except FieldError as exc:
            raise AckError(str(exc)) from None
        return cls(
            _parse_hex32(data["recordHash"], "recordHash"),
            _parse_point(data["publicKey"], "publicKey"),
            eddsa_poseidon.Signature(_parse_point(sig["R8"], "R8"), s),
        )


@dataclass(frozen=True)
class SemaphoreAcknowledgement:
    """An anonymous acknowledgement: a Semaphore proof over the record hash."""

    record_hash: bytes
    proof: SemaphoreProof

    def __post_init__(self) -> None:
        _check_digest(self.record_hash, "record hash")
        if not isinstance(self.proof, SemaphoreProof):
            raise AckError("proof must be a SemaphoreProof")

    def check(self, blob_digest: bytes, verifier: Callable[[SemaphoreProof], bool] = verify_proof) -> None:
        """Raise :class:`AckError` unless the proof is bound to this record and blob and
        verifies. Group membership (is the root one of the recipient group's roots?)
        is the caller's question: see ``merkle_tree_root``."""
        if self.proof.message != ack_message(self.record_hash):
            raise AckError("proof message is not ack_message(record hash)")
        if self.proof.scope != ack_scope(blob_digest):
            raise AckError("proof scope is not ack_scope(blob digest)")
        if not verifier(self.proof):
            raise AckError("Semaphore proof does not verify")

    def to_dict(self) -> dict[str, Any]:
        return {"type": KIND_SEMAPHORE, "recordHash": _hex32(self.record_hash), "proof": self.proof.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SemaphoreAcknowledgement:
        if set(data) != {"type", "recordHash", "proof"} or data["type"] != KIND_SEMAPHORE:
            raise AckError("a semaphore acknowledgement has keys type, recordHash, proof")
        try:
            proof = SemaphoreProof.from_dict(data["proof"])
        except SemaphoreProofError as exc:
            raise AckError(str(exc)) from None
        return cls(_parse_hex32(data["recordHash"], "recordHash"), proof)


Acknowledgement = EddsaAcknowledgement | SemaphoreAcknowledgement


def acknowledgement_from_dict(data: object) -> Acknowledgement:
    """Parse either kind, strictly, by its ``type``."""
    if not isinstance(data, Mapping):
        raise AckError("an acknowledgement is a JSON object")
    kind = data.get("type")
    if kind == KIND_EDDSA:
        return EddsaAcknowledgement.from_dict(data)
    if kind == KIND_SEMAPHORE:
        return SemaphoreAcknowledgement.from_dict(data)
    raise AckError(f"unknown acknowledgement type {kind!r}")


def sign_acknowledgement(record_hash: bytes, private_key: eddsa_poseidon.PrivateKey) -> EddsaAcknowledgement:
    """Acknowledge a record with a ZK-ID private key (EdDSA-Poseidon)."""
    signature = eddsa_poseidon.sign_message(private_key, ack_message(record_hash))
    return EddsaAcknowledgement(record_hash, eddsa_poseidon.derive_public_key(private_key), signature)


def prove_acknowledgement(
    identity: IdentityLike, group: LeanIMT | MerkleProof, record_hash: bytes, blob_digest: bytes
) -> SemaphoreAcknowledgement:
    """Acknowledge a record anonymously, as a member of ``group`` (a Semaphore proof)."""
    proof = generate_proof(identity, group, ack_message(record_hash), ack_scope(blob_digest))
    return SemaphoreAcknowledgement(record_hash, proof)
