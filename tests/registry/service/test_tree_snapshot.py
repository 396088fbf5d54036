"""registry.service.tree_snapshot: a snapshot plus the rows changed after it gives back
exactly the group's tree, or is refused; stored as a BLOB in real SQLite."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from registry.ledger.base import LedgerEvent
from registry.service import tree_snapshot
from registry.service.tree_snapshot import SnapshotRejected, TreeSnapshot, capture, leaf_changes, restore
from zk.field import R
from zk.tree import LeanIMT

LEAVES = [(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251 % R for i in range(200)]

Row = tuple[int, int, bool]


class Group:
    """A group as the index keeps it: member rows (commitment, block, removed) + a tree."""

    def __init__(self, size: int) -> None:
        self.rows: dict[int, tuple[int, int, bool]] = {i: (LEAVES[i], 1, False) for i in range(size)}
        self.tree = LeanIMT(leaves=LEAVES[:size], unique=False)

    def add(self, commitment: int, block: int) -> None:
        self.rows[self.tree.size] = (commitment, block, False)
        self.tree.insert(commitment)

    def update(self, idx: int, commitment: int, block: int) -> None:
        self.rows[idx] = (commitment, block, False)
        self.tree.update(idx, commitment)

    def remove(self, idx: int, block: int) -> None:
        self.rows[idx] = (self.rows[idx][0], block, True)
        self.tree.remove(idx)

    def changed_after(self, block: int) -> list[Row]:
        return [(i, c, r) for i, (c, b, r) in self.rows.items() if b > block]


def test_no_changes() -> None:
    group = Group(37)
    snap = capture(group.tree, 1).encode()
    assert (snap.block, snap.size, snap.root) == (1, 37, group.tree.root)
    restored = restore(snap, [], group.tree.root)
    assert restored.export() == group.tree.export()
    assert not restored.unique  # the index's trees accept re-added removed values


def test_changes_after_the_snapshot_are_replayed() -> None:
    group = Group(50)
    group.remove(3, 1)
    snap = capture(group.tree, 1).encode()
    group.update(7, LEAVES[120], 2)
    group.remove(9, 2)
    group.add(LEAVES[121], 2)
    group.add(LEAVES[122], 3)
    group.add(LEAVES[3], 3)  # a removed value added again
    group.remove(51, 3)  # an appended leaf removed
    group.update(50, LEAVES[123], 4)  # an appended leaf updated
    changes = group.changed_after(1)
    assert len(changes) == 5
    restored = restore(snap, reversed(changes), group.tree.root)
    assert restored.export() == group.tree.export()
    assert restored.index_of(LEAVES[3]) == 52 and restored.leaf(51) == 0
    for leaf in set(group.tree.leaves):
        assert restored.index_of(leaf) == group.tree.index_of(leaf)
    assert [restored.generate_proof(i) for i in range(restored.size)] == [
        group.tree.generate_proof(i) for i in range(group.tree.size)
    ]


def test_empty_group_and_group_emptied() -> None:
    empty = LeanIMT(unique=False)
    snap = capture(empty, 5).encode()
    assert restore(snap, [], 0).size == 0
    group = Group(1)
    snap = capture(group.tree, 1).encode()
    group.remove(0, 2)
    assert group.tree.root == 0  # a one-leaf group whose member left: no root recorded
    assert restore(snap, group.changed_after(1), 0).leaves == [0]
    two = [(0, LEAVES[0], False), (1, LEAVES[1], False)]
    grown = restore(capture(empty, 1).encode(), two, LeanIMT(leaves=LEAVES[:2]).root)
    assert grown.leaves == LEAVES[:2]


def test_stale_snapshot_is_refused() -> None:
    group = Group(20)
    snap = capture(group.tree, 1).encode()
    group.update(4, LEAVES[150], 2)
    group.add(LEAVES[151], 3)
    # The replay misses the block-2 change (e.g. a snapshot kept across a rollback).
    with pytest.raises(SnapshotRejected, match="current root"):
        restore(snap, group.changed_after(2), group.tree.root)
    with pytest.raises(SnapshotRejected, match="current root"):
        restore(snap, [], group.tree.root)
    assert restore(snap, group.changed_after(1), group.tree.root).root == group.tree.root


def test_rows_that_cannot_apply_are_refused() -> None:
    group = Group(10)
    group.remove(2, 1)
    snap = capture(group.tree, 1).encode()
    root = group.tree.root
    with pytest.raises(SnapshotRejected, match="do not apply"):
        restore(snap, [(11, LEAVES[50], False)], root)  # a gap before the appended row
    with pytest.raises(SnapshotRejected, match="do not apply"):
        restore(snap, [(2, LEAVES[50], False)], root)  # a removed leaf updated
    with pytest.raises(SnapshotRejected, match="do not apply"):
        restore(snap, [(10, 0, False)], root)  # 0 is not a member


def test_row_values_must_match_the_blob() -> None:
    group = Group(12)
    snap = capture(group.tree, 1).encode()
    for bad in (dataclasses.replace(snap, size=11), dataclasses.replace(snap, root=snap.root ^ 1)):
        with pytest.raises(SnapshotRejected, match="size and root"):
            restore(bad, [], group.tree.root)
    other = capture(Group(13).tree, 1).encode()
    with pytest.raises(SnapshotRejected, match="size and root"):
        restore(dataclasses.replace(snap, levels=other.levels), [], group.tree.root)


def test_corrupt_blob_is_refused() -> None:
    group = Group(12)
    snap = capture(group.tree, 1).encode()
    for levels in (snap.levels[:-1], snap.levels[:100] + bytes([snap.levels[100] ^ 1]) + snap.levels[101:], b""):
        with pytest.raises(SnapshotRejected, match="unreadable"):
            restore(dataclasses.replace(snap, levels=levels), [], group.tree.root)


def test_capture_is_frozen_and_validates_block() -> None:
    group = Group(8)
    captured = capture(group.tree, 1)
    root = group.tree.root
    group.add(LEAVES[80], 2)
    group.update(0, LEAVES[81], 2)
    snap = captured.encode()
    assert (snap.size, snap.root) == (8, root)
    assert restore(snap, group.changed_after(1), group.tree.root).export() == group.tree.export()
    for bad in (-1, True, "1"):
        with pytest.raises(ValueError):
            capture(group.tree, bad)  # type: ignore[arg-type]


def test_sqlite_blob_round_trip(tmp_path: Path) -> None:
    """The row shape the index stores (BLOB + plain columns), through a real database."""
    group = Group(130)
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.execute(
        "CREATE TABLE tree_snapshots (group_id INTEGER PRIMARY KEY, block INTEGER NOT NULL,"
        " size INTEGER NOT NULL, root TEXT NOT NULL, levels BLOB NOT NULL)"
    )
    snap = capture(group.tree, 9).encode()
    row = (1, snap.block, snap.size, str(snap.root), snap.levels)
    conn.execute("INSERT INTO tree_snapshots VALUES (?, ?, ?, ?, ?)", row)
    conn.commit()
    conn.close()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    block, size, root, levels = conn.execute("SELECT block, size, root, levels FROM tree_snapshots").fetchone()
    conn.close()
    assert isinstance(levels, bytes)
    group.add(LEAVES[140], 10)
    loaded = restore(TreeSnapshot(block, size, int(root), levels), group.changed_after(block), group.tree.root)
    assert loaded.export() == group.tree.export()


def event(name: str, group_id: int, **args: object) -> LedgerEvent:
    return LedgerEvent(
        name=name,
        args={"groupId": group_id, **args},
        address="0x" + "00" * 20,
        block_number=1,
        block_hash="0x" + "11" * 32,
        tx_hash="0x" + "22" * 32,
        log_index=0,
    )


def test_leaf_changes() -> None:
    events = [
        event("GroupCreated", 1, admin="0x" + "00" * 20, rootWindow=3600),
        event("MemberAdded", 1, commitment=5, newRoot=5),
        event("MembersAdded", 1, commitments=[6, 7, 8], newRoot=9),
        event("MemberUpdated", 2, index=0, newCommitment=3, newRoot=3),
        event("MemberRemoved", 1, index=0, newRoot=4),
        event("RootWindowChanged", 2, newWindow=10),
    ]
    assert leaf_changes(events) == {1: 5, 2: 1}
    assert tree_snapshot.SNAPSHOT_EVERY > 0
