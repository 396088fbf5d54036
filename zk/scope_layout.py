"""The byte layout shared by the project's Semaphore scope schemes.

A scope (the ``scope`` value of a Semaphore v4 proof) is a 256-bit integer read
big-endian as: a 4-byte magic naming the scheme and its version, then unsigned fields of
fixed widths, then zero bytes up to 32. ``zk.relay_scope`` and ``zk.admission_scope``
define their magic and fields (the layouts are in their module docstrings and in
docs/authorization.md, docs/admission.md); this module packs and parses exactly that,
and computes the *registry tag* both version-2 layouts carry (:class:`RegistryRef`).

Semaphore v4 never reduces a scope: the circuit's public input is
``keccak256(scope as 32 big-endian bytes) >> 8`` (``@semaphore-protocol/proof``
``hash``, ``Semaphore.sol`` ``_hash``; :func:`zk.hashing.semaphore_hash`), and the SDK's
``toBeHex(scope, 32)`` throws for a value outside ``[0, 2**256)``. So every value here is
checked to be in range and refused otherwise, never taken modulo anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from Crypto.Hash import keccak

SCOPE_BYTES = 32
MAGIC_BYTES = 4
#: Bytes of the registry tag in a version-2 scope (96 bits: docs/authorization.md).
REGISTRY_TAG_BYTES = 12
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class RegistryRef:
    """A registry deployment: the chain id and the ``ZkIdRegistry`` contract address, the
    first two parts of a global group reference ``(chain id, registry contract, group id)``.

    ``tag`` is ``keccak256(abi.encodePacked(uint256 chainId, address registry))[0:12]``
    read as a big-endian integer (docs/authorization.md "Registry tag"). ``contract`` is
    kept lower-case; a chain id outside ``[1, 2**256)`` or an address that is not
    ``0x`` and 40 hex digits is refused (``ValueError``), never reduced."""

    chain_id: int
    contract: str

    def __post_init__(self) -> None:
        chain_id, contract = self.chain_id, self.contract
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 1 <= chain_id < 1 << 256:
            raise ValueError("chain id must be an integer in [1, 2**256)")
        if not isinstance(contract, str) or _ADDRESS.fullmatch(contract) is None:
            raise ValueError("registry contract must be an address: 0x and 40 hex digits")
        object.__setattr__(self, "contract", contract.lower())

    @property
    def tag(self) -> int:
        """The 96-bit registry tag of version-2 scopes."""
        preimage = self.chain_id.to_bytes(32, "big") + bytes.fromhex(self.contract[2:])
        digest = keccak.new(digest_bits=256, data=preimage).digest()
        return int.from_bytes(digest[:REGISTRY_TAG_BYTES], "big")


def scope_magic(scope: int) -> bytes | None:
    """The first four bytes of a 256-bit unsigned ``scope``, or None for anything else."""
    if isinstance(scope, bool) or not isinstance(scope, int) or not 0 <= scope < (1 << (8 * SCOPE_BYTES)):
        return None
    return scope.to_bytes(SCOPE_BYTES, "big")[:MAGIC_BYTES]


def pack_scope(magic: bytes, fields: Sequence[tuple[str, int, int]], error: type[ValueError]) -> int:
    """``magic`` then each ``(name, value, width)`` as a big-endian ``width``-byte unsigned
    integer, zero-padded to 32 bytes. Raises ``error`` naming the first value that is not
    an ``int`` (``bool`` refused) in ``[0, 2**(8*width))``."""
    raw = bytearray(magic)
    for name, value, width in fields:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * width):
            raise error(f"{name} out of range")
        raw += value.to_bytes(width, "big")
    return int.from_bytes(bytes(raw).ljust(SCOPE_BYTES, b"\0"), "big")


def unpack_scope(
    scope: int, magic: bytes, widths: Sequence[int], error: type[ValueError], scheme: str
) -> tuple[int, ...]:
    """The field values of ``scope`` in the layout ``magic`` + ``widths`` + zero bytes.
    Raises ``error`` unless ``scope`` is a 256-bit unsigned ``int`` with that magic and
    with every byte after the fields zero; ``scheme`` names it in the message."""
    if isinstance(scope, bool) or not isinstance(scope, int) or not 0 <= scope < (1 << (8 * SCOPE_BYTES)):
        raise error("scope is not a 256-bit unsigned integer")
    raw = scope.to_bytes(SCOPE_BYTES, "big")
    if raw[:MAGIC_BYTES] != magic:
        raise error(f"scope is not {scheme} scope (bad magic)")
    values = []
    at = MAGIC_BYTES
    for width in widths:
        values.append(int.from_bytes(raw[at : at + width], "big"))
        at += width
    if any(raw[at:]):
        raise error("scope has non-zero reserved bytes")
    return tuple(values)
