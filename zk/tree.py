"""Lean Incremental Merkle Tree (LeanIMT), the tree of a Semaphore v4 group.

References: ``@zk-kit/lean-imt`` 2.2.5 (``src/lean-imt.ts``), its Solidity twin
``@zk-kit/lean-imt.sol`` 2.0.1 (``InternalLeanIMT.sol``), ``@semaphore-protocol/group``
4.14.3 and the LeanIMT paper (zk-kit, "LeanIMT: an optimized incremental Merkle tree").

Rules (identical roots, proofs and exports to the JS library):

- a parent is ``hash(left, right)``, with ``hash = Poseidon2`` for Semaphore;
- there are no zero hashes: a node without a right sibling is carried up unchanged;
- ``depth = ceil(log2(size))``; a one-leaf tree's root is that leaf; an empty tree's
  root is 0 (``Group.root``; the bare JS LeanIMT returns ``undefined``);
- a proof lists only the siblings that exist, and its ``index`` packs the left/right
  bits of those levels alone (bit ``i`` = position at the ``i``-th listed sibling);
- ``export()`` is the JSON array of levels (leaves first, root last) with decimal
  strings, byte-for-byte what ``LeanIMT.export()``/``Group.export()`` produce.

Membership rules follow Semaphore: leaves are field elements (rejected, never reduced,
when >= r); 0 marks a removed member, so 0 cannot be added, a removed leaf cannot be
updated or removed again (``Group.updateMember``/``removeMember``). With ``unique=True``
(the default) a leaf may appear only once, as ``LeanIMT.sol`` enforces on chain
(``LeafAlreadyExists``); ``unique=False`` accepts duplicates like the JS ``Group``, and
``index_of`` then returns the lowest index. Unlike the JS ``indexOf``, ``index_of(0)``
and ``has(0)`` do not report removed slots (as ``LeanIMT.sol``), and a missing leaf gives
``None`` rather than -1.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from zk import strict_json
from zk.field import R, check_scalar, parse_decimal

__all__ = [
    "HashFn",
    "TreeError",
    "MerkleProof",
    "LeanIMT",
    "CircuitMerkleProof",
    "MIN_CIRCUIT_DEPTH",
    "MAX_CIRCUIT_DEPTH",
    "merkle_proof_to_circuit_inputs",
]

HashFn = Callable[[int, int], int]

#: Depths of the Semaphore v4 circuits (``@semaphore-protocol/utils`` MIN_DEPTH/MAX_DEPTH).
MIN_CIRCUIT_DEPTH = 1
MAX_CIRCUIT_DEPTH = 32


class TreeError(ValueError):
    """An operation breaks a LeanIMT/Semaphore group rule (bad index, zero, duplicate...)."""


def _default_hash() -> HashFn:
    # Imported lazily so that importing this module stays cheap.
    from zk.poseidon import poseidon2

    return poseidon2


def _check_index_type(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TreeError(f"{name} must be an integer, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class MerkleProof:
    """A LeanIMT membership proof (``LeanIMTMerkleProof`` of the JS library)."""

    root: int
    leaf: int
    index: int
    siblings: tuple[int, ...]

    def __post_init__(self) -> None:
        check_scalar(self.root, "proof root")
        check_scalar(self.leaf, "proof leaf")
        if _check_index_type(self.index, "proof index") < 0:
            raise TreeError("proof index cannot be negative")
        if isinstance(self.siblings, list):
            object.__setattr__(self, "siblings", tuple(self.siblings))
        if not isinstance(self.siblings, tuple):
            raise TreeError("proof siblings must be a tuple of integers")
        for i, sibling in enumerate(self.siblings):
            check_scalar(sibling, f"proof sibling {i}")

    def to_dict(self) -> dict[str, Any]:
        """The JS shape with big integers as decimal strings."""
        return {
            "root": str(self.root),
            "leaf": str(self.leaf),
            "index": self.index,
            "siblings": [str(s) for s in self.siblings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MerkleProof:
        """Parse ``to_dict`` output (canonical decimal strings; an integer index)."""
        if not isinstance(data, dict) or set(data) != {"root", "leaf", "index", "siblings"}:
            raise TreeError("a Merkle proof needs exactly root, leaf, index and siblings")
        siblings = data["siblings"]
        if not isinstance(siblings, list):
            raise TreeError("proof siblings must be a list")
        return cls(
            root=parse_decimal(data["root"], "proof root"),
            leaf=parse_decimal(data["leaf"], "proof leaf"),
            index=_check_index_type(data["index"], "proof index"),
            siblings=tuple(parse_decimal(s, f"proof sibling {i}") for i, s in enumerate(siblings)),
        )


class LeanIMT:
    """A LeanIMT whose levels are kept as lists of ints (``levels[0]`` = leaves)."""

    __slots__ = ("_hash", "_unique", "_levels", "_index", "_dupes")

    def __init__(self, hash: HashFn | None = None, leaves: Iterable[int] = (), *, unique: bool = True) -> None:
        self._hash: HashFn = _default_hash() if hash is None else hash
        self._unique = unique
        self._levels: list[list[int]] = [[]]
        # Lowest index of every non-zero leaf; `_dupes` lists all indices of the leaves
        # present more than once (only ever filled when unique=False).
        self._index: dict[int, int] = {}
        self._dupes: dict[int, list[int]] = {}
        batch = list(leaves)
        if batch:
            self.insert_many(batch)

    # -- read access ---------------------------------------------------------------

    @property
    def root(self) -> int:
        """The root; 0 for an empty tree (as ``Group.root``)."""
        top = self._levels[-1]
        return top[0] if top else 0

    @property
    def depth(self) -> int:
        """``ceil(log2(size))``; 0 for an empty or one-leaf tree."""
        return len(self._levels) - 1

    @property
    def size(self) -> int:
        """Number of leaves, removed (zero) ones included."""
        return len(self._levels[0])

    @property
    def leaves(self) -> list[int]:
        """A copy of the leaves in insertion order (0 = removed)."""
        return list(self._levels[0])

    @property
    def unique(self) -> bool:
        return self._unique

    def leaf(self, index: int) -> int:
        """The leaf at ``index``."""
        return self._levels[0][self._check_index(index)]

    def index_of(self, leaf: int) -> int | None:
        """Lowest index holding ``leaf`` (O(1)); ``None`` if absent or ``leaf`` is 0."""
        return self._index.get(leaf) if leaf else None

    def has(self, leaf: int) -> bool:
        return bool(leaf) and leaf in self._index

    # -- changes -------------------------------------------------------------------

    def insert(self, leaf: int) -> None:
        """Append one leaf (``Group.addMember``)."""
        self.insert_many([leaf])

    def insert_many(self, leaves: Iterable[int]) -> None:
        """Append leaves, hashing each new parent once (``Group.addMembers``).

        All leaves are checked before any is added: on error the tree is unchanged.
        """
        batch = list(leaves)
        if not batch:
            raise TreeError("there are no leaves to add")
        start = self.size
        new_index: dict[int, int] = {}
        for offset, leaf in enumerate(batch):
            self._check_new_leaf(leaf, "leaf")
            if leaf in new_index or leaf in self._index:
                if self._unique:
                    raise TreeError(f"leaf {offset} of the batch is already in the tree or repeated in the batch")
                continue
            new_index[leaf] = start + offset
        self._index.update(new_index)
        if len(new_index) != len(batch):  # duplicates, only possible when unique=False
            for offset, leaf in enumerate(batch):
                if new_index.get(leaf) != start + offset:
                    self._add_duplicate(leaf, start + offset)
        self._levels[0].extend(batch)
        self._rehash_from(start)

    def update(self, index: int, new_leaf: int) -> None:
        """Replace the leaf at ``index`` (``Group.updateMember``); use ``remove`` for 0."""
        self._check_index(index)
        old = self._levels[0][index]
        if old == 0:
            raise TreeError(f"the leaf at index {index} has been removed and cannot be updated")
        self._check_new_leaf(new_leaf, "new leaf")
        if self._unique and new_leaf in self._index:
            raise TreeError("the new leaf is already in the tree")
        self._forget(old, index)
        self._remember(new_leaf, index)
        self._set_leaf(index, new_leaf)

    def remove(self, index: int) -> None:
        """Set the leaf at ``index`` to 0 (``Group.removeMember``); the size is unchanged."""
        self._check_index(index)
        old = self._levels[0][index]
        if old == 0:
            raise TreeError(f"the leaf at index {index} has already been removed")
        self._forget(old, index)
        self._set_leaf(index, 0)

    # -- proofs --------------------------------------------------------------------

    def generate_proof(self, index: int) -> MerkleProof:
        """Membership proof of the leaf at ``index`` (``LeanIMT.generateProof``)."""
        self._check_index(index)
        siblings: list[int] = []
        path = 0
        position = index
        for level in self._levels[:-1]:
            if position & 1:
                path |= 1 << len(siblings)
                siblings.append(level[position - 1])
            elif position + 1 < len(level):
                siblings.append(level[position + 1])
            position >>= 1
        return MerkleProof(root=self.root, leaf=self._levels[0][index], index=path, siblings=tuple(siblings))

    @staticmethod
    def verify_proof(proof: MerkleProof, hash: HashFn | None = None) -> bool:
        """Whether ``proof`` leads from its leaf to its root (``LeanIMT.verifyProof``).

        Stricter than the JS function: an index with bits above the number of siblings
        (ignored by the JS loop) is refused, so each proof has one encoding.
        """
        if not isinstance(proof, MerkleProof):
            raise TreeError("verify_proof takes a MerkleProof")
        if proof.index >> len(proof.siblings):
            return False
        h = _default_hash() if hash is None else hash
        node = proof.leaf
        for i, sibling in enumerate(proof.siblings):
            node = h(sibling, node) if (proof.index >> i) & 1 else h(node, sibling)
        return node == proof.root

    # -- export / import -----------------------------------------------------------

    def export(self) -> str:
        """The JSON of ``LeanIMT.export()``: levels from leaves to root, decimal strings."""
        return "[" + ",".join("[" + ",".join(f'"{v}"' for v in level) + "]" for level in self._levels) + "]"

    @classmethod
    def import_(cls, text: str, hash: HashFn | None = None, *, verify: bool = True, unique: bool = True) -> LeanIMT:
        """Rebuild a tree from ``export()`` output (or JS ``LeanIMT``/``Group.export()``).

        The shape and every value are always checked (canonical decimals below r, each
        level half the one below, a single root, membership rules). With ``verify``
        every parent is also recomputed, which costs as much as building the tree; pass
        ``verify=False`` only for exports from a trusted store.
        """
        if not isinstance(text, str):
            raise TreeError("an exported tree is a JSON string")
        try:
            raw = strict_json.loads(text, max_depth=2)
        except strict_json.JsonInputError as exc:
            raise TreeError(f"exported tree is not valid JSON: {exc}") from None
        if not isinstance(raw, list) or not raw or not all(isinstance(level, list) for level in raw):
            raise TreeError("an exported tree is a non-empty JSON array of arrays")
        levels = [[parse_decimal(v, f"node {d}/{i}") for i, v in enumerate(level)] for d, level in enumerate(raw)]
        return cls.from_levels(levels, hash, verify=verify, unique=unique)

    @classmethod
    def from_levels(
        cls, levels: list[list[int]], hash: HashFn | None = None, *, verify: bool = True, unique: bool = True
    ) -> LeanIMT:
        """A tree from its levels (leaves first, root last), as ``import_`` but without JSON.

        The lists are taken over, not copied. Shape, values (ints in [0, r)) and membership
        rules are always checked; ``verify`` recomputes every parent as ``import_`` does.
        """
        if not isinstance(levels, list) or not levels or not all(isinstance(level, list) for level in levels):
            raise TreeError("the levels are a non-empty list of lists")
        for d, level in enumerate(levels):
            if level and (set(map(type, level)) != {int} or min(level) < 0 or max(level) >= R):
                raise TreeError(f"level {d} holds a value that is not a field element")
        if levels == [[]]:
            return cls(hash, unique=unique)
        for d in range(len(levels) - 1):
            if len(levels[d]) < 2 or len(levels[d + 1]) != (len(levels[d]) + 1) // 2:
                raise TreeError(f"level {d + 1} does not have the size its children imply")
        if len(levels[-1]) != 1:
            raise TreeError("the last level must hold exactly the root")
        tree = cls(hash, unique=unique)
        tree._index_leaves(levels[0])
        if verify:
            for d in range(len(levels) - 1):
                if tree._parents(levels[d], 0) != levels[d + 1]:
                    raise TreeError(f"level {d + 1} does not match the hashes of level {d}")
        tree._levels = levels
        return tree

    # -- internals -----------------------------------------------------------------

    def _check_index(self, index: int) -> int:
        if not 0 <= _check_index_type(index, "index") < self.size:
            raise TreeError(f"there is no leaf at index {index} (size {self.size})")
        return index

    @staticmethod
    def _check_new_leaf(leaf: int, name: str) -> None:
        check_scalar(leaf, name)
        if leaf == 0:
            raise TreeError(f"{name} cannot be 0 (0 marks a removed member)")

    def _parents(self, level: list[int], first: int) -> list[int]:
        """Parents ``first..`` of ``level``: hashed pairs, then a carried odd node."""
        end = len(level) & ~1
        out = list(map(self._hash, level[2 * first : end : 2], level[2 * first + 1 : end : 2]))
        if len(level) & 1:
            out.append(level[-1])
        return out

    def _rehash_from(self, start: int) -> None:
        """Recompute every node above leaves ``start..`` (appended leaves)."""
        d = 0
        while len(self._levels[d]) > 1:
            first = start >> 1
            if d + 1 == len(self._levels):
                self._levels.append([])
            upper = self._levels[d + 1]
            del upper[first:]
            upper.extend(self._parents(self._levels[d], first))
            start = first
            d += 1

    def _set_leaf(self, index: int, value: int) -> None:
        """Write a leaf and rehash its path (the JS ``update``)."""
        node = value
        position = index
        for level in self._levels[:-1]:
            level[position] = node
            if position & 1:
                node = self._hash(level[position - 1], node)
            elif position + 1 < len(level):
                node = self._hash(node, level[position + 1])
            position >>= 1
        self._levels[-1][0] = node

    def _index_leaves(self, leaves: list[int]) -> None:
        """Fill the leaf index of a fresh tree from ``leaves`` (0 = removed, skipped)."""
        # Fast path: assigning in reverse order leaves each value's lowest index.
        index = dict(zip(reversed(leaves), range(len(leaves) - 1, -1, -1)))
        index.pop(0, None)
        if len(index) + leaves.count(0) == len(leaves):
            self._index = index
            return
        for i, leaf in enumerate(leaves):  # some leaf repeats
            if leaf == 0:
                continue
            if self._unique and leaf in self._index:
                raise TreeError(f"leaf {i} appears more than once")
            self._remember(leaf, i)

    def _add_duplicate(self, leaf: int, index: int) -> None:
        indices = self._dupes.get(leaf)
        if indices is None:
            indices = self._dupes[leaf] = [self._index[leaf]]
        insort(indices, index)
        self._index[leaf] = indices[0]

    def _remember(self, leaf: int, index: int) -> None:
        if leaf == 0:
            return
        if leaf in self._index:
            self._add_duplicate(leaf, index)
        else:
            self._index[leaf] = index

    def _forget(self, leaf: int, index: int) -> None:
        indices = self._dupes.get(leaf)
        if indices is None:
            del self._index[leaf]
            return
        indices.remove(index)
        self._index[leaf] = indices[0]
        if len(indices) == 1:
            del self._dupes[leaf]


class CircuitMerkleProof(NamedTuple):
    """The Merkle inputs of the Semaphore circuit for one proof."""

    merkle_proof_length: int
    merkle_proof_index: int
    merkle_proof_siblings: list[int]  # padded with 0 to the circuit depth


def merkle_proof_to_circuit_inputs(proof: MerkleProof, max_depth: int | None = None) -> CircuitMerkleProof:
    """Circuit inputs as ``generateProof`` (``@semaphore-protocol/proof`` 4.14.3) builds them.

    ``max_depth`` is the circuit depth (1..32); by default, as in ``generateProof``, the
    number of siblings, or 1 for a one-leaf group. The circuit depth is
    ``len(result.merkle_proof_siblings)``. Unlike the JS code, a depth smaller than the proof is
    refused here instead of producing inputs the circuit rejects.
    """
    if not isinstance(proof, MerkleProof):
        raise TreeError("merkle_proof_to_circuit_inputs takes a MerkleProof")
    length = len(proof.siblings)
    if max_depth is None:
        depth = length if length else 1
    else:
        depth = _check_index_type(max_depth, "max_depth")
        if not MIN_CIRCUIT_DEPTH <= depth <= MAX_CIRCUIT_DEPTH:
            raise TreeError(f"the tree depth must be between {MIN_CIRCUIT_DEPTH} and {MAX_CIRCUIT_DEPTH}")
    if length > depth or depth > MAX_CIRCUIT_DEPTH:
        raise TreeError(f"a proof with {length} siblings does not fit a circuit of depth {depth}")
    if proof.index >> length:
        raise TreeError("proof index has bits beyond its siblings")
    padded = [*proof.siblings, *([0] * (depth - length))]
    return CircuitMerkleProof(merkle_proof_length=length, merkle_proof_index=proof.index, merkle_proof_siblings=padded)
