"""EdDSA over Baby Jubjub with Poseidon, as in @zk-kit/eddsa-poseidon 1.1.0 (BLAKE1 engine).

Reference: zk-kit ``packages/eddsa-poseidon/src/eddsa-poseidon-factory.ts`` (1.1.0; the
same algorithm as 1.0.4, which @semaphore-protocol/identity 4.14.3 uses); the scheme is
circomlib's ``eddsaposeidon.circom`` / circomlibjs ``eddsa.js``.

- h = BLAKE-512(private key bytes); a text key is its UTF-8 bytes.
- s = little-endian(prune(h[0:32])), prune: clear the 3 low bits, clear bit 255, set bit 254.
- secret scalar = (s >> 3) mod l; public key A = Base8 * (s >> 3).
- r = little-endian(BLAKE-512(h[32:64] || message as 32 bytes little-endian)) mod l.
- R8 = Base8 * r; S = (r + Poseidon5(R8.x, R8.y, A.x, A.y, message) * s) mod l.
- valid iff S < l and Base8 * S == R8 + (8 * hm) * A.

Deliberate differences (stricter, never on values the JS library itself produces):
messages must be field elements (the JS library reduces larger ones inside Poseidon);
``verify_signature`` also requires canonical coordinates and a public key in the
prime-order subgroup (a key with a small-order component would verify the same
signatures as the clean key); ``unpack_signature`` rejects S >= l; ``unpack_public_key``
requires a subgroup point.
"""

from __future__ import annotations

from dataclasses import dataclass

from zk import babyjubjub as bj
from zk.blake512 import blake512
from zk.field import check_scalar
from zk.poseidon import poseidon

__all__ = [
    "Signature",
    "derive_public_key",
    "derive_secret_scalar",
    "pack_public_key",
    "pack_signature",
    "private_key_bytes",
    "sign_message",
    "unpack_public_key",
    "unpack_signature",
    "verify_signature",
]

PrivateKey = bytes | bytearray | memoryview | str


@dataclass(frozen=True)
class Signature:
    """An EdDSA-Poseidon signature: the point R8 and the scalar S (field names as in JS)."""

    R8: bj.Point
    S: int


def private_key_bytes(private_key: PrivateKey) -> bytes:
    """The JS library's ``checkPrivateKey``: bytes as they are, text as UTF-8."""
    if isinstance(private_key, str):
        try:
            return private_key.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
            raise ValueError("private key text is not valid Unicode") from exc
    if isinstance(private_key, (bytes, bytearray, memoryview)):
        return bytes(private_key)
    raise ValueError("private key must be bytes or str")


def _pruned_scalar(digest: bytes) -> int:
    b = bytearray(digest[:32])
    b[0] &= 0xF8
    b[31] &= 0x7F
    b[31] |= 0x40
    return int.from_bytes(b, "little")


def derive_secret_scalar(private_key: PrivateKey) -> int:
    """zk-kit ``deriveSecretScalar``: ((pruned BLAKE-512(key)[0:32]) >> 3) mod l."""
    return (_pruned_scalar(blake512(private_key_bytes(private_key))) >> 3) % bj.SUBORDER


def derive_public_key(private_key: PrivateKey) -> bj.Point:
    """zk-kit ``derivePublicKey``: Base8 * secret scalar."""
    return bj.mul_base8(derive_secret_scalar(private_key))


def sign_message(private_key: PrivateKey, message: int) -> Signature:
    """zk-kit ``signMessage`` for a message that is a field element (0 <= message < r)."""
    message = check_scalar(message, "message")
    digest = blake512(private_key_bytes(private_key))
    s = _pruned_scalar(digest)
    public = bj.mul_base8(s >> 3)
    r = int.from_bytes(blake512(digest[32:64] + message.to_bytes(32, "little")), "little") % bj.SUBORDER
    r8 = bj.mul_base8(r)
    hm = poseidon([r8[0], r8[1], public[0], public[1], message])
    return Signature(r8, (r + hm * s) % bj.SUBORDER)


def verify_signature(message: int, signature: Signature, public_key: bj.Point) -> bool:
    """zk-kit ``verifySignature``; False (never an exception) for anything malformed."""
    if not isinstance(signature, Signature):
        return False
    try:
        check_scalar(message, "message")
    except ValueError:
        return False
    s = signature.S
    if type(s) is not int or not 0 <= s < bj.SUBORDER:
        return False
    if not bj.in_curve(signature.R8) or not bj.in_subgroup(public_key):
        return False
    r8, a = signature.R8, public_key
    hm = poseidon([r8[0], r8[1], a[0], a[1], message])
    left = bj.mul_base8(s)
    right = bj.add(r8, bj.mul(a, 8 * hm))
    return left == right


def pack_public_key(public_key: bj.Point) -> int:
    """zk-kit ``packPublicKey``: the packed point as an integer (see :func:`zk.babyjubjub.pack_point`)."""
    return bj.pack_point(public_key)


def unpack_public_key(packed: int) -> bj.Point:
    """zk-kit ``unpackPublicKey``, strict: canonical packing of a point of the prime-order subgroup."""
    point = bj.unpack_point(packed)
    if not bj.in_subgroup(point):
        raise bj.CurveError("public key is not in the prime-order subgroup")
    return point


def pack_signature(signature: Signature) -> bytes:
    """zk-kit ``packSignature``: packed R8 (32 bytes LE) || S (32 bytes LE)."""
    if not isinstance(signature, Signature) or not bj.in_curve(signature.R8):
        raise ValueError("invalid signature")
    s = signature.S
    if type(s) is not int or not 0 <= s < bj.SUBORDER:
        raise ValueError("invalid signature: S must be in [0, l)")
    return bj.pack_point(signature.R8).to_bytes(32, "little") + s.to_bytes(32, "little")


def unpack_signature(packed: bytes) -> Signature:
    """zk-kit ``unpackSignature``, strict: 64 bytes, canonical R8, S < l."""
    if not isinstance(packed, (bytes, bytearray, memoryview)):
        raise ValueError("packed signature must be bytes")
    data = bytes(packed)
    if len(data) != 64:
        raise ValueError("packed signature must be 64 bytes")
    r8 = bj.unpack_point(int.from_bytes(data[:32], "little"))
    s = int.from_bytes(data[32:], "little")
    if s >= bj.SUBORDER:
        raise ValueError("packed signature: S is not below the subgroup order")
    return Signature(r8, s)
