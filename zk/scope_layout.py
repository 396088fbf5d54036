"""The byte layout shared by the project's Semaphore scope schemes.

A scope (the ``scope`` public input of a Semaphore v4 proof, semaphore.circom) is a
256-bit integer read big-endian as: a 4-byte magic naming the scheme and its version,
then unsigned fields of fixed widths, then zero bytes up to 32. ``zk.relay_scope`` and
``zk.admission_scope`` define their magic and fields (the layouts are in their module
docstrings); this module packs and parses exactly that, nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

SCOPE_BYTES = 32
MAGIC_BYTES = 4


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
