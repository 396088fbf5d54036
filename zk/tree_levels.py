"""A binary snapshot of a :class:`zk.tree.LeanIMT`: every level, so it reloads without hashing.

Building a LeanIMT of n leaves costs n - 1 Poseidon hashes (55 µs or more each here: a
minute or more for a million leaves); its levels, stored once, reload without hashing
(BENCHMARKS.md, "Scale of one group"). The format is ours
(there is no standard binary LeanIMT export; ``LeanIMT.export()`` of ``@zk-kit/lean-imt``
2.2.5 is the JSON equivalent, with the same content: levels from leaves to root)::

    magic   4 bytes   b"LIMT"
    version 1 byte    1
    zero    3 bytes
    size    8 bytes   number of leaves, big-endian
    digest 32 bytes   SHA-256 of the 16 bytes above followed by the body
    body              every node, leaves first, level by level, 32 bytes big-endian each

The level sizes follow from ``size`` (LeanIMT: each level holds ``ceil(len(below) / 2)``
nodes, up to the single root), so the body is exactly ``32 * sum(level sizes)`` bytes.

Loading checks the digest (a torn or altered blob), the shape and every value (field
elements, membership rules of :meth:`LeanIMT.from_levels`) and recomputes the hash paths
of the first, the last and ``spot_checks`` randomly chosen leaves. It does not recompute
every parent (that is the cost a snapshot avoids): the caller must compare the root with a
trusted one (the chain's), as :mod:`registry.service.tree_snapshot` does.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Literal

from zk.tree import HashFn, LeanIMT, TreeError

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_SIZE",
    "SnapshotFormatError",
    "level_sizes",
    "copy_levels",
    "encode_levels",
    "dump_levels",
    "load_levels",
]

MAGIC = b"LIMT"
VERSION = 1
_PREFIX = struct.Struct(">4sB3xQ")
HEADER_SIZE = _PREFIX.size + 32
NODE_SIZE = 32
#: Far beyond any group (2^32 leaves is the deepest Semaphore circuit).
MAX_SIZE = 1 << 32


class SnapshotFormatError(TreeError):
    """The bytes are not a valid LeanIMT snapshot (format, digest, shape, values or hashes)."""


def level_sizes(size: int) -> list[int]:
    """Node count of each level of a ``size``-leaf LeanIMT, leaves first (``[0]`` if empty)."""
    sizes = [size]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _poseidon2() -> HashFn:
    from zk.poseidon import poseidon2  # as zk.tree: imported when first needed

    return poseidon2


def copy_levels(tree: LeanIMT) -> list[list[int]]:
    """A copy of ``tree``'s levels (one list copy per level: no hashing, no encoding).

    The ints are immutable, so the copy is a frozen state to encode later, e.g. outside
    the lock that guards the live tree.
    """
    if not isinstance(tree, LeanIMT):
        raise TypeError("copy_levels takes a LeanIMT")
    # The levels are the tree's private state, read here (this module is its serialiser).
    return [list(level) for level in tree._levels]


def encode_levels(levels: list[list[int]]) -> bytes:
    """The snapshot bytes of a tree given by its levels (``copy_levels`` output)."""
    size = len(levels[0]) if levels else -1
    if size < 0 or [len(level) for level in levels] != level_sizes(size):
        raise SnapshotFormatError("the levels do not have the sizes of a LeanIMT")
    nodes = [v for level in levels for v in level]
    big: list[Literal["big"]] = ["big"] * len(nodes)  # map() over 3 lists: the fastest form
    try:
        body = b"".join(map(int.to_bytes, nodes, [NODE_SIZE] * len(nodes), big))
    except (OverflowError, TypeError):
        raise SnapshotFormatError("a node is not a 32-byte unsigned integer") from None
    prefix = _PREFIX.pack(MAGIC, VERSION, size)
    return prefix + hashlib.sha256(prefix + body).digest() + body


def dump_levels(tree: LeanIMT) -> bytes:
    """The snapshot bytes of ``tree`` (see the module docstring for the format)."""
    if not isinstance(tree, LeanIMT):
        raise TypeError("dump_levels takes a LeanIMT")
    return encode_levels(tree._levels)


def _parse_header(data: bytes) -> int:
    """The leaf count of a snapshot whose length, header and digest are right."""
    if len(data) < HEADER_SIZE:
        raise SnapshotFormatError("the snapshot is shorter than its header")
    magic, version, size = _PREFIX.unpack_from(data)
    size = int(size)
    if magic != MAGIC or data[5:8] != b"\0\0\0":
        raise SnapshotFormatError("not a LeanIMT snapshot")
    if version != VERSION:
        raise SnapshotFormatError(f"snapshot version {version} is not {VERSION}")
    if size > MAX_SIZE:
        raise SnapshotFormatError("the snapshot claims too many leaves")
    if len(data) != HEADER_SIZE + NODE_SIZE * sum(level_sizes(size)):
        raise SnapshotFormatError("the snapshot length does not match its size")
    view = memoryview(data)
    digest = hashlib.sha256(view[: _PREFIX.size])
    digest.update(view[HEADER_SIZE:])
    if digest.digest() != data[_PREFIX.size : HEADER_SIZE]:
        raise SnapshotFormatError("the snapshot digest does not match its content")
    return size


def _decode(data: bytes, size: int) -> list[list[int]]:
    # Slices of the bytes themselves: no copy of the whole body (tens of MB).
    from_bytes = int.from_bytes
    levels: list[list[int]] = []
    offset = HEADER_SIZE
    for count in level_sizes(size):
        end = offset + NODE_SIZE * count
        levels.append([from_bytes(data[i : i + NODE_SIZE], "big") for i in range(offset, end, NODE_SIZE)])
        offset = end
    return levels


def _check_path(levels: list[list[int]], index: int, hash: HashFn) -> None:
    """Recompute every parent on the path of leaf ``index`` (a carried node is copied)."""
    position = index
    for d in range(len(levels) - 1):
        level = levels[d]
        left = position & ~1
        parent = levels[d + 1][position >> 1]
        expected = hash(level[left], level[left + 1]) if left + 1 < len(level) else level[left]
        if parent != expected:
            raise SnapshotFormatError(f"level {d + 1} does not match the hashes of level {d}")
        position >>= 1


def load_levels(
    data: bytes | bytearray | memoryview,
    hash: HashFn | None = None,
    *,
    unique: bool = True,
    spot_checks: int = 8,
) -> LeanIMT:
    """The tree a snapshot holds, after the checks of the module docstring.

    ``spot_checks`` random leaf paths are recomputed besides the first and the last one
    (about 20 hashes each for a million leaves). Raises :class:`SnapshotFormatError`.
    """
    if isinstance(spot_checks, bool) or not isinstance(spot_checks, int) or spot_checks < 0:
        raise ValueError("spot_checks must be a non-negative integer")
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise SnapshotFormatError("a tree snapshot is bytes")
    size = _parse_header(data)
    levels = _decode(data, size)
    try:
        tree = LeanIMT.from_levels(levels, hash, verify=False, unique=unique)
    except TreeError as exc:
        raise SnapshotFormatError(f"the snapshot is not a valid tree: {exc}") from None
    if size > 1:
        h = hash if hash is not None else _poseidon2()
        rng = random.SystemRandom()
        for index in {0, size - 1, *(rng.randrange(size) for _ in range(spot_checks))}:
            _check_path(levels, index, h)
    return tree
