"""RFC 9162 (Certificate Transparency v2) Merkle trees over SHA-256.

Implements, for the evidence log:

- leaf and interior node hashing (RFC 9162 §2.1.1): ``H(0x00 || data)`` and
  ``H(0x01 || left || right)``; the empty tree hashes to ``H("")``;
- the Merkle Tree Hash ``MTH`` of a list of leaf hashes (§2.1.1);
- inclusion proofs: generation (``PATH``, §2.1.3.1) and verification (§2.1.3.2);
- consistency proofs: generation (``PROOF``/``SUBPROOF``, §2.1.4.1) and
  verification (§2.1.4.2).

Proof generation reads the tree through :class:`TreeReader`, a narrow interface a
store can serve from memoised complete subtrees ("tiles"): every hash a proof needs
is the hash of a *complete, aligned* subtree ``[start, start + 2**level)``, or the
fold of at most ``log2(n)`` of them, so a proof costs ``O(log n)`` reads.

Verification never trusts its input: any malformed value (wrong type or length,
index out of range, proof of the wrong length) raises :class:`ProofError` from the
``check_*`` functions, and makes the ``verify_*`` functions return ``False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32

#: RFC 9162 §2.1.1: the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: Tree sizes and indices are bounded like the Go implementations (int64), which also
#: bounds the length of a valid proof to 64 hashes.
MAX_TREE_SIZE = (1 << 63) - 1
MAX_PROOF_HASHES = 64

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A Merkle proof, or an input to one, is malformed or does not verify.

    ``reason`` is a short stable code (``"bad_hash"``, ``"index_out_of_range"``,
    ``"wrong_proof_length"``, ``"root_mismatch"``...); the message adds detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: ``MTH({d}) = SHA-256(0x00 || d)``."""
    return hashlib.sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: ``SHA-256(0x01 || MTH(left) || MTH(right))``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162 §2.1.1: the largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of already-hashed leaves (RFC 9162 §2.1.1), in ``O(n)`` hashes.

    Folds complete subtrees left to right (like the append path of a log), which gives
    the same result as the recursive definition.
    """
    for i, h in enumerate(leaf_hashes):
        _check_hash(h, f"leaf hash {i}")
    if not leaf_hashes:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (level, hash) of complete subtrees, left to right
    for h in leaf_hashes:
        level, node = 0, h
        while stack and stack[-1][0] == level:
            node = node_hash(stack.pop()[1], node)
            level += 1
        stack.append((level, node))
    # The remaining perfect subtrees are folded right to left (RFC 9162's right-heavy split).
    root = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        root = node_hash(h, root)
    return root


class TreeReader(Protocol):
    """Read access to an append-only tree of leaf hashes, for proof generation.

    A store implements it with two reads:

    - ``leaf_hash(index)``: the RFC 9162 leaf hash of entry ``index``;
    - ``subtree_hash(start, level)``: the root of the complete, aligned subtree that
      covers leaves ``[start, start + 2**level)``. Callers guarantee
      ``start % 2**level == 0`` and ``start + 2**level <= size``. Such a subtree never
      changes once complete, so a store can memoise it (for example persist every node
      completed by an append, see :func:`nodes_completed_by_append`) and answer in one
      indexed read; ``subtree_hash(i, 0)`` is ``leaf_hash(i)``.
    """

    @property
    def size(self) -> int: ...

    def leaf_hash(self, index: int) -> bytes: ...

    def subtree_hash(self, start: int, level: int) -> bytes: ...


def nodes_completed_by_append(
    index: int, new_leaf_hash: bytes, read_node: Callable[[int, int], bytes]
) -> list[tuple[int, int, bytes]]:
    """The interior nodes completed by appending leaf ``index``, as ``(level, position, hash)``.

    ``read_node(level, position)`` returns a stored complete node (level 0 = leaves).
    Appending leaf ``i`` completes one node per trailing one-bit of ``i`` (its left
    siblings are all complete already). A store persisting these rows can serve
    :meth:`TreeReader.subtree_hash` with a single read.
    """
    _check_hash(new_leaf_hash, "leaf hash")
    out: list[tuple[int, int, bytes]] = []
    level, position, node = 0, index, new_leaf_hash
    while position & 1:
        node = node_hash(read_node(level, position - 1), node)
        level += 1
        position >>= 1
        out.append((level, position, node))
    return out


class MemoryTree:
    """An in-memory :class:`TreeReader` (for tests, benchmarks and small logs).

    With ``cache=True`` it keeps every complete node (``2n`` hashes of memory), so
    ``subtree_hash`` is one list lookup; with ``cache=False`` it recomputes subtree
    roots from the leaves (``O(2**level)``), which tests use as a reference.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = (), *, cache: bool = True) -> None:
        self._cache = cache
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, new_leaf_hash: bytes) -> int:
        """Append a leaf *hash*; return its index."""
        _check_hash(new_leaf_hash, "leaf hash")
        index = self.size
        self._levels[0].append(new_leaf_hash)
        if self._cache:
            for level, position, node in nodes_completed_by_append(index, new_leaf_hash, self._node):
                if len(self._levels) <= level:
                    self._levels.append([])
                assert len(self._levels[level]) == position
                self._levels[level].append(node)
        return index

    def append_data(self, data: bytes) -> int:
        """Append an entry (hashed with :func:`leaf_hash`); return its index."""
        return self.append(leaf_hash(data))

    def _node(self, level: int, position: int) -> bytes:
        return self._levels[level][position]

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise ProofError("index_out_of_range", f"leaf {index} not in a tree of size {self.size}")
        return self._levels[0][index]

    def subtree_hash(self, start: int, level: int) -> bytes:
        width = 1 << level
        if level < 0 or start < 0 or start % width or start + width > self.size:
            raise ProofError("bad_subtree", f"[{start}, {start + width}) is not a complete aligned subtree")
        if self._cache:
            return self._levels[level][start >> level]
        return self._compute(start, level)

    def _compute(self, start: int, level: int) -> bytes:
        if level == 0:
            return self._levels[0][start]
        half = 1 << (level - 1)
        return node_hash(self._compute(start, level - 1), self._compute(start + half, level - 1))


# --- Generation --------------------------------------------------------------------


def _range_hash(reader: TreeReader, start: int, end: int) -> bytes:
    """MTH of ``D[start:end]`` for a range arising in RFC 9162's recursion.

    Such a range starts at a multiple of the largest power of two not above its
    length, so it splits into perfect aligned subtrees following the binary digits of
    its length, folded right to left.
    """
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    parts: list[bytes] = []
    position = start
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            parts.append(reader.subtree_hash(position, level))
            position += 1 << level
    root = parts[-1]
    for h in reversed(parts[:-1]):
        root = node_hash(h, root)
    return root


def _check_size(reader: TreeReader, tree_size: int | None) -> int:
    size = reader.size if tree_size is None else tree_size
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= reader.size:
        raise ProofError("bad_tree_size", f"tree size {size!r} not in [0, {reader.size}]")
    return size


def root_hash(reader: TreeReader, tree_size: int | None = None) -> bytes:
    """MTH of the first ``tree_size`` leaves (default: the whole tree)."""
    return _range_hash(reader, 0, _check_size(reader, tree_size))


def inclusion_proof(reader: TreeReader, index: int, tree_size: int | None = None) -> list[bytes]:
    """RFC 9162 §2.1.3.1 ``PATH(index, D[0:tree_size])``, leaf sibling first."""
    n = _check_size(reader, tree_size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ProofError("index_out_of_range", f"index {index!r} not in a tree of size {n}")
    top_down: list[bytes] = []
    start, end = 0, n
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            top_down.append(_range_hash(reader, start + k, end))
            end = start + k
        else:
            top_down.append(_range_hash(reader, start, start + k))
            start += k
    # PATH lists the deepest sibling first.
    top_down.reverse()
    return top_down


def consistency_proof(reader: TreeReader, size1: int, size2: int | None = None) -> list[bytes]:
    """RFC 9162 §2.1.4.1 ``PROOF(size1, D[0:size2])`` for ``0 < size1 <= size2``.

    Equal sizes give the empty proof (nothing to prove, as in the Go implementations).
    """
    n = _check_size(reader, size2)
    if isinstance(size1, bool) or not isinstance(size1, int) or not 0 < size1 <= n:
        raise ProofError("bad_tree_size", f"size1 {size1!r} not in [1, {n}]")
    top_down: list[bytes] = []
    m, start, end, whole = size1, 0, n, True  # ``whole`` is SUBPROOF's boolean b
    while True:
        if m == end - start:
            if not whole:
                top_down.append(_range_hash(reader, start, end))
            break
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            top_down.append(_range_hash(reader, start + k, end))
            end = start + k
        else:
            top_down.append(_range_hash(reader, start, start + k))
            m -= k
            start += k
            whole = False
    top_down.reverse()
    return top_down


# --- Verification -------------------------------------------------------------------


def _check_hash(value: object, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError("bad_hash", f"{name} must be {HASH_SIZE} bytes")
    return value


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_TREE_SIZE:
        raise ProofError("bad_integer", f"{name} must be an integer in [{low}, 2^63)")
    return value


def _check_path(proof: object) -> list[bytes]:
    if not isinstance(proof, (list, tuple)):
        raise ProofError("bad_proof", "proof must be a list of hashes")
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError("wrong_proof_length", "proof is longer than any valid proof")
    return [_check_hash(h, f"proof hash {i}") for i, h in enumerate(proof)]


def root_from_inclusion_proof(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4, and the
    ``sn == 0`` test of step 5); raise :class:`ProofError` if the proof is malformed."""
    r = _check_hash(leaf, "leaf hash")
    index = _check_int(index, "index", 0)
    tree_size = _check_int(tree_size, "tree size", 1)
    path = _check_path(proof)
    if index >= tree_size:
        raise ProofError("index_out_of_range", f"index {index} >= tree size {tree_size}")
    fn, sn = index, tree_size - 1
    for p in path:
        if sn == 0:
            raise ProofError("wrong_proof_length", "proof has too many hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Skip the levels where the node is the last one of its level (no sibling).
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("wrong_proof_length", "proof has too few hashes")
    return r


def check_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`ProofError` unless ``leaf`` is at ``index`` in
    the tree of ``tree_size`` leaves with root ``root``."""
    expected = _check_hash(root, "root")
    if root_from_inclusion_proof(leaf, index, tree_size, proof) != expected:
        raise ProofError("root_mismatch", "inclusion proof does not lead to the root")


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """:func:`check_inclusion` as a boolean; never raises."""
    try:
        check_inclusion(leaf, index, tree_size, proof, root)
    except ProofError:
        return False
    return True


def check_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`ProofError` unless the tree ``(size1, root1)`` is
    a prefix of the tree ``(size2, root2)``.

    Beyond the RFC's ``0 < size1 < size2``: equal sizes need an empty proof and equal
    roots; ``size1 == 0`` is refused, as a proof from the empty tree proves nothing.
    """
    first = _check_hash(root1, "root1")
    second = _check_hash(root2, "root2")
    size1 = _check_int(size1, "size1", 0)
    size2 = _check_int(size2, "size2", 0)
    path = _check_path(proof)
    if size1 > size2:
        raise ProofError("bad_tree_size", f"size1 {size1} > size2 {size2}")
    if size1 == 0:
        raise ProofError("bad_tree_size", "a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if path:
            raise ProofError("wrong_proof_length", "equal sizes need an empty proof")
        if first != second:
            raise ProofError("root_mismatch", "equal sizes but different roots")
        return
    # Step 1: the proof between different sizes is never empty.
    if not path:
        raise ProofError("wrong_proof_length", "empty consistency proof")
    # Step 2: when size1 is a power of two, the old root is itself a node of the new tree.
    if size1 & (size1 - 1) == 0:
        path = [first, *path]
    # Steps 3-4.
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Steps 5-6.
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("wrong_proof_length", "proof has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise ProofError("wrong_proof_length", "proof has too few hashes")
    if fr != first:
        raise ProofError("root_mismatch", "proof does not lead to root1")
    if sr != second:
        raise ProofError("root_mismatch", "proof does not lead to root2")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    """:func:`check_consistency` as a boolean; never raises."""
    try:
        check_consistency(size1, size2, root1, root2, proof)
    except ProofError:
        return False
    return True
