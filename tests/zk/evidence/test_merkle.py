"""zk.evidence.merkle: RFC 9162 known answers, the transparency-dev probe suite,
properties over random trees, and robustness against malformed input."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zk.evidence.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    ProofError,
    check_consistency,
    check_inclusion,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    mth,
    node_hash,
    nodes_completed_by_append,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
PROBES = json.loads((VECTORS / "evidence_ct_probes.json").read_text("utf-8"))

# The 8-leaf test tree of the Go/C++ certificate-transparency suites, as published in
# github.com/transparency-dev/merkle testonly/constants.go (LeafInputs, RootHashes,
# NodeHashes) and cmd/proofgen/main.go (inclusion and consistency proofs).
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
NODES = {  # (level, index) -> hash
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 2): "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    (0, 3): "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 5): "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    (0, 6): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 0): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def _nodes(*keys: tuple[int, int]) -> list[str]:
    """The hashes of NODES at ``keys`` ((level, index) each), in order."""
    return [NODES[key] for key in keys]


# The published proofs, each node named by its place in NODES (the same subtree hashes
# recur across proofs). proofgen's inclusionProofs use 1-based leaf numbers; converted to
# 0-based indices here.
INCLUSION = [
    (0, 1, []),
    (0, 8, _nodes((0, 1), (1, 1), (2, 1))),
    (5, 8, _nodes((0, 4), (1, 3), (2, 0))),
    (2, 3, _nodes((1, 0))),
    (1, 5, _nodes((0, 0), (1, 1), (0, 4))),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, _nodes((0, 1), (1, 1), (2, 1))),
    (6, 8, _nodes((1, 2), (1, 3), (2, 0))),
    (2, 5, _nodes((1, 1), (0, 4))),
    (6, 7, _nodes((1, 2), (0, 6), (2, 0))),
]


def hx(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


@pytest.fixture(scope="module")
def ct_tree() -> MemoryTree:
    return MemoryTree(leaf_hash(d) for d in LEAVES)


# --- Known answers ------------------------------------------------------------------


def test_hashing_primitives() -> None:
    assert EMPTY_ROOT == ROOTS[0]
    assert leaf_hash(b"") == ROOTS[1]
    assert node_hash(bytes.fromhex(NODES[(0, 0)]), bytes.fromhex(NODES[(0, 1)])) == bytes.fromhex(NODES[(1, 0)])
    # golang.org/x/mod/sumdb/tlog note_test.go: RecordHash("hello world") in its tree note.
    assert base64.b64encode(leaf_hash(b"hello world")) == b"TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0="


@pytest.mark.parametrize("cache", [True, False])
def test_roots_for_every_size(cache: bool) -> None:
    tree = MemoryTree((leaf_hash(d) for d in LEAVES), cache=cache)
    for size, expected in enumerate(ROOTS):
        assert root_hash(tree, size) == expected
        assert mth([leaf_hash(d) for d in LEAVES[:size]]) == expected


def test_node_hashes(ct_tree: MemoryTree) -> None:
    for (level, index), expected in NODES.items():
        assert ct_tree.subtree_hash(index << level, level).hex() == expected


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_known_inclusion_proofs(ct_tree: MemoryTree, index: int, size: int, path: list[str]) -> None:
    assert inclusion_proof(ct_tree, index, size) == hx(path)
    assert verify_inclusion(leaf_hash(LEAVES[index]), index, size, hx(path), ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "path"), CONSISTENCY)
def test_known_consistency_proofs(ct_tree: MemoryTree, size1: int, size2: int, path: list[str]) -> None:
    assert consistency_proof(ct_tree, size1, size2) == hx(path)
    assert verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], hx(path))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _probe_id(p: dict[str, Any]) -> str:
    return str(p["file"])


# Probes the Go verifier accepts but which use 12-byte "don't care" roots: this module
# refuses any hash that is not 32 bytes.
STRICTER = {"consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


@pytest.mark.parametrize("probe", PROBES["inclusion"], ids=_probe_id)
def test_transparency_dev_inclusion_probes(probe: dict[str, Any]) -> None:
    proof = [_b64(h) for h in probe["proof"] or []]
    ok = verify_inclusion(_b64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"], proof, _b64(probe["root"]))
    assert ok is (not probe["wantErr"])


@pytest.mark.parametrize("probe", PROBES["consistency"], ids=_probe_id)
def test_transparency_dev_consistency_probes(probe: dict[str, Any]) -> None:
    proof = [_b64(h) for h in probe["proof"] or []]
    ok = verify_consistency(probe["size1"], probe["size2"], _b64(probe["root1"]), _b64(probe["root2"]), proof)
    expected = not probe["wantErr"] and probe["file"] not in STRICTER
    assert ok is expected


def test_probe_suite_is_complete() -> None:
    # Each of the 5 inclusion and 5 consistency probe sets carries one happy path.
    happy = [p for p in PROBES["inclusion"] + PROBES["consistency"] if not p["wantErr"]]
    assert len(happy) >= 10 and len(PROBES["inclusion"]) > 80 and len(PROBES["consistency"]) > 80


# --- Properties over random trees ----------------------------------------------------


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_every_inclusion_proof_verifies_and_tampering_fails(size: int, data: st.DataObject) -> None:
    tree = MemoryTree(leaf_hash(i.to_bytes(4, "big")) for i in range(size))
    tree_size = data.draw(st.integers(1, size))
    index = data.draw(st.integers(0, tree_size - 1))
    root = root_hash(tree, tree_size)
    leaf = tree.leaf_hash(index)
    proof = inclusion_proof(tree, index, tree_size)
    assert len(proof) <= (tree_size - 1).bit_length()
    assert verify_inclusion(leaf, index, tree_size, proof, root)
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(_flip(leaf, bit), index, tree_size, proof, root)
    assert not verify_inclusion(leaf, index, tree_size, proof, _flip(root, bit))
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        tampered = [*proof]
        tampered[which] = _flip(tampered[which], bit)
        assert not verify_inclusion(leaf, index, tree_size, tampered, root)
        assert not verify_inclusion(leaf, index, tree_size, proof[:-1], root)
    assert not verify_inclusion(leaf, index, tree_size, [*proof, root], root)
    other = data.draw(st.integers(0, tree_size - 1))
    if other != index:
        assert not verify_inclusion(leaf, other, tree_size, proof, root)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_every_consistency_proof_verifies_and_tampering_fails(size: int, data: st.DataObject) -> None:
    tree = MemoryTree(leaf_hash(i.to_bytes(4, "big")) for i in range(size))
    size2 = data.draw(st.integers(1, size))
    size1 = data.draw(st.integers(1, size2))
    root1, root2 = root_hash(tree, size1), root_hash(tree, size2)
    proof = consistency_proof(tree, size1, size2)
    assert verify_consistency(size1, size2, root1, root2, proof)
    bit = data.draw(st.integers(0, 255))
    assert not verify_consistency(size1, size2, _flip(root1, bit), root2, proof)
    assert not verify_consistency(size1, size2, root1, _flip(root2, bit), proof)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        tampered = [*proof]
        tampered[which] = _flip(tampered[which], bit)
        assert not verify_consistency(size1, size2, root1, root2, tampered)
    if size1 < size2:
        assert not verify_consistency(size2, size1, root2, root1, proof)
        assert not verify_consistency(size1, size2, root1, root2, [*proof, root2])
        assert not verify_consistency(size1, size2, root1, root2, proof[:-1])


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 200), data=st.data())
def test_cached_and_uncached_generation_agree(size: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
    cached, plain = MemoryTree(hashes), MemoryTree(hashes, cache=False)
    tree_size = data.draw(st.integers(1, size))
    index = data.draw(st.integers(0, tree_size - 1))
    assert root_hash(cached, tree_size) == root_hash(plain, tree_size) == mth(hashes[:tree_size])
    assert inclusion_proof(cached, index, tree_size) == inclusion_proof(plain, index, tree_size)
    first = data.draw(st.integers(1, tree_size))
    assert consistency_proof(cached, first, tree_size) == consistency_proof(plain, first, tree_size)


class CountingReader:
    """A TreeReader that counts reads, to check the O(log n) access pattern."""

    def __init__(self, tree: MemoryTree) -> None:
        self.tree = tree
        self.reads = 0

    @property
    def size(self) -> int:
        return self.tree.size

    def leaf_hash(self, index: int) -> bytes:
        self.reads += 1
        return self.tree.leaf_hash(index)

    def subtree_hash(self, start: int, level: int) -> bytes:
        self.reads += 1
        return self.tree.subtree_hash(start, level)


def test_proofs_need_logarithmic_reads() -> None:
    size = 100_003  # not a power of two: right-border subtrees are incomplete
    reader = CountingReader(MemoryTree(leaf_hash(i.to_bytes(4, "big")) for i in range(size)))
    for index in (0, 1, 65_535, 65_536, 99_999, size - 1):
        reader.reads = 0
        proof = inclusion_proof(reader, index)
        assert verify_inclusion(reader.tree.leaf_hash(index), index, size, proof, root_hash(reader.tree))
        assert reader.reads <= 2 * size.bit_length()
    for first in (1, 3, 65_536, 70_001, size - 1):
        reader.reads = 0
        consistency_proof(reader, first)
        assert reader.reads <= 3 * size.bit_length()


def test_nodes_completed_by_append_matches_memory_tree() -> None:
    stored: dict[tuple[int, int], bytes] = {}
    tree = MemoryTree()
    for i in range(37):
        h = leaf_hash(bytes([i]))
        stored[(0, i)] = h
        for level, position, node in nodes_completed_by_append(i, h, lambda lv, p: stored[(lv, p)]):
            stored[(level, position)] = node
        tree.append(h)
    for (level, position), node in stored.items():
        assert tree.subtree_hash(position << level, level) == node
    assert len(stored) == 37 + 36 - bin(37).count("1") + 1  # every complete node, once


# --- Malformed input -----------------------------------------------------------------


GOOD = bytes(32)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((GOOD, 0, 0, [], GOOD), "bad_integer"),  # empty tree has no leaves
        ((GOOD, 1, 1, [], GOOD), "index_out_of_range"),
        ((GOOD, -1, 1, [], GOOD), "bad_integer"),
        ((GOOD, 0, 2**63, [], GOOD), "bad_integer"),
        ((GOOD, True, 2, [GOOD], GOOD), "bad_integer"),
        ((GOOD[:31], 0, 1, [], GOOD), "bad_hash"),
        ((GOOD, 0, 1, [], GOOD + b"\x00"), "bad_hash"),
        ((bytearray(GOOD), 0, 1, [], GOOD), "bad_hash"),
        (("00" * 32, 0, 1, [], GOOD), "bad_hash"),
        ((GOOD, 0, 2, [GOOD[:5]], GOOD), "bad_hash"),
        ((GOOD, 0, 2, "not a list", GOOD), "bad_proof"),
        ((GOOD, 0, 2, [GOOD] * 65, GOOD), "wrong_proof_length"),
        ((GOOD, 0, 2, [], GOOD), "wrong_proof_length"),
        ((GOOD, 0, 2, [GOOD, GOOD], GOOD), "wrong_proof_length"),
        ((GOOD, 0, 1, [], b"\x01" * 32), "root_mismatch"),
    ],
)
def test_inclusion_rejects_malformed_input(args: tuple[Any, ...], reason: str) -> None:
    with pytest.raises(ProofError) as info:
        check_inclusion(*args)
    assert info.value.reason == reason
    assert verify_inclusion(*args) is False


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((0, 0, EMPTY_ROOT, EMPTY_ROOT, []), "bad_tree_size"),
        ((0, 3, GOOD, GOOD, [GOOD]), "bad_tree_size"),
        ((3, 2, GOOD, GOOD, [GOOD]), "bad_tree_size"),
        ((1, 1, GOOD, GOOD, [GOOD]), "wrong_proof_length"),
        ((1, 1, GOOD, b"\x01" * 32, []), "root_mismatch"),
        ((1, 2, GOOD, GOOD, []), "wrong_proof_length"),
        ((1, 2, GOOD, GOOD, [GOOD, GOOD]), "wrong_proof_length"),
        ((3, 4, GOOD, GOOD, [GOOD]), "wrong_proof_length"),
        ((1, 2, GOOD[:1], GOOD, [GOOD]), "bad_hash"),
        ((-1, 2, GOOD, GOOD, [GOOD]), "bad_integer"),
        ((1, 2, GOOD, GOOD, None), "bad_proof"),
    ],
)
def test_consistency_rejects_malformed_input(args: tuple[Any, ...], reason: str) -> None:
    with pytest.raises(ProofError) as info:
        check_consistency(*args)
    assert info.value.reason == reason
    assert verify_consistency(*args) is False


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.binary(max_size=40), st.text(max_size=5),
    st.lists(st.binary(min_size=30, max_size=33), max_size=70),
)


@settings(max_examples=150, deadline=None)
@given(st.tuples(junk, junk, junk, junk, junk))
def test_verification_never_crashes(args: tuple[Any, ...]) -> None:
    assert verify_inclusion(*args) in (True, False)
    assert verify_consistency(*args) in (True, False)


def test_generation_rejects_bad_requests(ct_tree: MemoryTree) -> None:
    for index, size in [(8, None), (0, 9), (3, 3), (-1, None), (0, 0)]:
        with pytest.raises(ProofError):
            inclusion_proof(ct_tree, index, size)
    for first, second in [(0, 8), (9, None), (5, 4)]:
        with pytest.raises(ProofError):
            consistency_proof(ct_tree, first, second)
    with pytest.raises(ProofError):
        ct_tree.subtree_hash(1, 1)  # not aligned
    with pytest.raises(ProofError):
        ct_tree.subtree_hash(0, 4)  # beyond the tree
    with pytest.raises(ProofError):
        MemoryTree().append(b"short")
    with pytest.raises(ProofError):
        root_from_inclusion_proof(GOOD, 0, 1, [GOOD])
