"""zk.tree_levels (binary LeanIMT snapshots) against the JS exports and zk.tree itself."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# The JS reference's trees and leaves, as test_tree.py reads them.
from tests.zk.test_tree import LEAVES, VECTORS
from zk.field import R
from zk.poseidon import poseidon2
from zk.tree import LeanIMT, TreeError
from zk.tree_levels import (
    HEADER_SIZE,
    SnapshotFormatError,
    copy_levels,
    dump_levels,
    encode_levels,
    level_sizes,
    load_levels,
)


def js_exports() -> list[str]:
    exports = [item["export"] for item in VECTORS["bulk"] if "export" in item]
    exports += [s["export"] for s in VECTORS["scenarios"].values()]
    exports.append(VECTORS["duplicates"]["export"])
    return exports


def expected_bytes(export: str) -> bytes:
    """The format written out by hand from a JS ``LeanIMT.export()`` (independent encoder)."""
    levels = [[int(v) for v in level] for level in json.loads(export)]
    body = b"".join(v.to_bytes(32, "big") for level in levels for v in level)
    prefix = b"LIMT" + bytes([1, 0, 0, 0]) + len(levels[0]).to_bytes(8, "big")
    return prefix + hashlib.sha256(prefix + body).digest() + body


def same_tree(a: LeanIMT, b: LeanIMT) -> None:
    assert a.export() == b.export()
    assert (a.root, a.size, a.depth, a.unique) == (b.root, b.size, b.depth, b.unique)
    for leaf in set(a.leaves):
        assert a.index_of(leaf) == b.index_of(leaf)
    for i in range(a.size):
        assert a.generate_proof(i) == b.generate_proof(i)


def resign(data: bytes) -> bytes:
    """``data`` with its digest recomputed (to reach the checks behind the digest)."""
    return data[:16] + hashlib.sha256(data[:16] + data[HEADER_SIZE:]).digest() + data[HEADER_SIZE:]


# -- known answers ----------------------------------------------------------------------


@pytest.mark.parametrize("export", js_exports())
def test_js_exports_round_trip(export: str) -> None:
    unique = export != VECTORS["duplicates"]["export"]
    reference = LeanIMT.import_(export, unique=unique)
    data = dump_levels(reference)
    assert data == expected_bytes(export)
    loaded = load_levels(data, unique=unique, spot_checks=64)
    assert loaded.export() == export
    same_tree(loaded, reference)


def test_known_three_leaf_snapshot() -> None:
    # LeanIMT of [1, 2, 3]: leaf 3 is carried up, root = Poseidon(Poseidon(1, 2), 3).
    h12 = 7853200120776062878684798364095072458815029376092732009249414926327459813530
    assert poseidon2(1, 2) == h12
    data = dump_levels(LeanIMT(leaves=[1, 2, 3]))
    assert data[:16] == bytes.fromhex("4c494d5401000000" "0000000000000003")
    assert len(data) == HEADER_SIZE + 32 * 6
    assert data[HEADER_SIZE + 32 * 3 : HEADER_SIZE + 32 * 4] == h12.to_bytes(32, "big")
    assert int.from_bytes(data[-32:], "big") == poseidon2(h12, 3)


def test_level_sizes() -> None:
    assert level_sizes(0) == [0]
    assert level_sizes(1) == [1]
    assert level_sizes(2) == [2, 1]
    assert level_sizes(5) == [5, 3, 2, 1]
    assert level_sizes(1 << 20) == [1 << (20 - d) for d in range(21)]


def test_empty_and_single_leaf() -> None:
    for tree in (LeanIMT(), LeanIMT(leaves=[LEAVES[0]])):
        data = dump_levels(tree)
        assert len(data) == HEADER_SIZE + 32 * tree.size
        same_tree(load_levels(data), tree)


# -- LeanIMT.from_levels: the fast leaf index matches the incremental one -------------------


def test_from_levels_index_matches_incremental_rules() -> None:
    leaves = [5, 6, 6, 0, 5, 7, 0, 6]
    incremental = LeanIMT(leaves=[v or 9 for v in leaves], unique=False)
    for i, v in enumerate(leaves):
        if v == 0:
            incremental.remove(i)
    rebuilt = LeanIMT.from_levels(copy_levels(incremental), unique=False)
    same_tree(rebuilt, incremental)
    assert [rebuilt.index_of(v) for v in (5, 6, 7, 9, 0)] == [0, 1, 5, None, None]
    rebuilt.remove(1)
    assert rebuilt.index_of(6) == 2  # the duplicate list came along
    with pytest.raises(TreeError, match="leaf 2 appears more than once"):
        LeanIMT.from_levels(copy_levels(incremental))
    unique = LeanIMT(leaves=[3, 4, 5])
    unique.remove(1)
    assert LeanIMT.from_levels(copy_levels(unique)).index_of(5) == 2


@pytest.mark.parametrize(
    "levels",
    [[], [[1, 2]], [[1, 2], [3], [4]], [[1, 2, 3], [4], [5]], [[True, 2], [3]], [[1, -2], [3]], [[1, R], [3]], "x"],
)
def test_from_levels_rejects_bad_shapes_and_values(levels: Any) -> None:
    with pytest.raises(TreeError):
        LeanIMT.from_levels(levels, verify=False)


def test_from_levels_verify_recomputes_parents() -> None:
    levels = copy_levels(LeanIMT(leaves=LEAVES[:5]))
    levels[1][0] ^= 1
    LeanIMT.from_levels([list(x) for x in levels], verify=False)
    with pytest.raises(TreeError, match="does not match"):
        LeanIMT.from_levels(levels)


# -- refusals ---------------------------------------------------------------------------


def sample() -> bytes:
    return dump_levels(LeanIMT(leaves=LEAVES[:9]))


def test_every_flipped_byte_is_refused() -> None:
    data = sample()
    for i in range(len(data)):
        broken = bytearray(data)
        broken[i] ^= 0x40
        with pytest.raises(SnapshotFormatError):
            load_levels(bytes(broken))


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d[:-1], "length"),
        (lambda d: d + b"\0" * 32, "length"),
        (lambda d: d[:10], "shorter"),
        (lambda d: b"LIMX" + d[4:], "not a LeanIMT"),
        (lambda d: d[:4] + b"\x02" + d[5:], "version 2"),
        (lambda d: d[:5] + b"\x01" + d[6:], "not a LeanIMT"),
        (lambda d: d[:8] + struct.pack(">Q", 1 << 40) + d[16:], "too many"),
        (lambda d: d[:8] + struct.pack(">Q", 8) + d[16:], "length"),
    ],
)
def test_malformed_headers(mutate: Any, reason: str) -> None:
    with pytest.raises(SnapshotFormatError, match=reason):
        load_levels(mutate(sample()))


def test_consistent_digest_but_wrong_hashes() -> None:
    data = bytearray(sample())
    # Level 1 starts after the 9 leaves; its node 0 lies on the path of leaf 0.
    offset = HEADER_SIZE + 32 * 9
    data[offset + 31] ^= 1
    with pytest.raises(SnapshotFormatError, match="does not match the hashes"):
        load_levels(resign(bytes(data)), spot_checks=0)


def test_consistent_digest_but_values_outside_the_field() -> None:
    data = bytearray(sample())
    data[HEADER_SIZE + 32 * 4 : HEADER_SIZE + 32 * 5] = R.to_bytes(32, "big")
    with pytest.raises(SnapshotFormatError, match="field element"):
        load_levels(resign(bytes(data)))


def test_consistent_digest_but_duplicate_leaves() -> None:
    data = dump_levels(LeanIMT(leaves=[1, 1, 2], unique=False))
    assert load_levels(data, unique=False).index_of(1) == 0
    with pytest.raises(SnapshotFormatError, match="more than once"):
        load_levels(data)


def test_argument_types() -> None:
    with pytest.raises(SnapshotFormatError):
        load_levels("LIMT")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        load_levels(sample(), spot_checks=-1)
    with pytest.raises(TypeError):
        dump_levels([[1]])  # type: ignore[arg-type]
    with pytest.raises(SnapshotFormatError, match="sizes"):
        encode_levels([[1, 2, 3], [4]])
    with pytest.raises(SnapshotFormatError, match="32-byte"):
        encode_levels([[1 << 256]])
    assert load_levels(bytearray(sample())).size == 9
    assert load_levels(memoryview(sample())).size == 9


def test_copy_levels_is_frozen() -> None:
    tree = LeanIMT(leaves=LEAVES[:6])
    before = dump_levels(tree)
    levels = copy_levels(tree)
    tree.insert(LEAVES[6])
    tree.update(0, LEAVES[7])
    assert encode_levels(levels) == before


# -- properties -------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_round_trip_after_random_changes(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 40))
    tree = LeanIMT(leaves=LEAVES[:size], unique=False)
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, size - 1))
        if tree.leaf(i) == 0:
            continue
        if data.draw(st.booleans()):
            tree.remove(i)
        else:
            tree.update(i, LEAVES[data.draw(st.integers(0, 60))])
    loaded = load_levels(dump_levels(tree), unique=False, spot_checks=size)
    same_tree(loaded, tree)
    loaded.insert(LEAVES[100])
    tree.insert(LEAVES[100])
    assert loaded.root == tree.root
