"""Semaphore v4 identity, as in @semaphore-protocol/identity 4.14.3 (``src/index.ts``).

An identity is an EdDSA-Poseidon key pair (:mod:`zk.eddsa_poseidon`): the private key
is arbitrary bytes (random 32 bytes by default; text keys are their UTF-8 bytes), the
secret scalar and public key are derived from it, and the public commitment is
``Poseidon2(A.x, A.y)``. ``export()`` is the JS SDK's: standard base64 (with padding)
of the private key bytes; ``import_`` reverses it (strictly: only the canonical base64
that ``export`` produces is accepted, where Node's decoder would skip bad characters).
"""

from __future__ import annotations

import base64
import binascii
import secrets

from zk import babyjubjub as bj
from zk import eddsa_poseidon as eddsa
from zk.eddsa_poseidon import Signature
from zk.poseidon import poseidon2

__all__ = ["Identity", "Signature"]

#: Length of a freshly generated private key (as the JS SDK's default).
PRIVATE_KEY_BYTES = 32


class Identity:
    """A Semaphore v4 identity. Immutable; the private key never appears in ``repr``."""

    __slots__ = ("_private_key", "_secret_scalar", "_public_key", "_commitment")

    def __init__(self, private_key: bytes | str | None = None) -> None:
        if private_key is None:
            private_key = secrets.token_bytes(PRIVATE_KEY_BYTES)
        key = eddsa.private_key_bytes(private_key)
        self._private_key = key
        self._secret_scalar = eddsa.derive_secret_scalar(key)
        self._public_key = bj.mul_base8(self._secret_scalar)
        self._commitment = poseidon2(*self._public_key)

    @property
    def private_key(self) -> bytes:
        return self._private_key

    @property
    def secret_scalar(self) -> int:
        return self._secret_scalar

    @property
    def public_key(self) -> bj.Point:
        return self._public_key

    @property
    def commitment(self) -> int:
        return self._commitment

    def export(self) -> str:
        """The private key as standard base64 (the JS SDK's ``export()``)."""
        return base64.b64encode(self._private_key).decode("ascii")

    @classmethod
    def import_(cls, exported: str) -> Identity:
        """Rebuild an identity from :meth:`export`'s output (the JS SDK's ``Identity.import``)."""
        if not isinstance(exported, str) or not exported.isascii():
            raise ValueError("exported identity must be an ASCII base64 string")
        try:
            key = base64.b64decode(exported, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("exported identity is not valid base64") from exc
        if base64.b64encode(key).decode("ascii") != exported:
            raise ValueError("exported identity is not canonical base64")
        return cls(key)

    def sign_message(self, message: int) -> Signature:
        """Sign a field element with this identity's key (EdDSA-Poseidon)."""
        return eddsa.sign_message(self._private_key, message)

    @staticmethod
    def verify_signature(message: int, signature: Signature, public_key: bj.Point) -> bool:
        """True if ``signature`` is valid for ``message`` under ``public_key``; never raises."""
        return eddsa.verify_signature(message, signature, public_key)

    @staticmethod
    def generate_commitment(public_key: bj.Point) -> int:
        """Poseidon2(A.x, A.y) for a public key (which must be a curve point)."""
        if not bj.in_curve(public_key):
            raise bj.CurveError("public key is not a Baby Jubjub point")
        return poseidon2(public_key[0], public_key[1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return secrets.compare_digest(self._private_key, other._private_key)

    def __hash__(self) -> int:
        return hash(self._commitment)

    def __repr__(self) -> str:
        return f"Identity(commitment={self._commitment})"

