"""ChainIndex and its tree snapshots (``tree_snapshots``, registry/service/tree_snapshot.py):
a reopened index restores a group from its snapshot plus the rows changed after it, a
damaged or stale snapshot falls back to the rebuild with the same tree, a rollback below a
snapshot drops it, a follower's reload uses it. SQLite and PostgreSQL (``database_url``).

A few thousand members with ``snapshot_every`` lowered, so a snapshot is written in a test
of a second or so; the roots are those of an independent LeanIMT (``Chain``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.service import tree_snapshot
from registry.service.index import FILE_NAME, MIGRATIONS, BlockRef, ChainIndex
from tests.registry.conftest import StoreOpener, make_commitments
from tests.registry.service.test_index import Chain
from zk.tree import LeanIMT

EVERY = 500
VALUES = make_commitments(2_600)

OpenIndex = Callable[..., ChainIndex]


@pytest.fixture
def open_index(store_opener: StoreOpener) -> OpenIndex:
    """``open_index(**kwargs)``: a ChainIndex on this test's database (every call: a
    reopening, or another replica), ``snapshot_every=EVERY`` unless given."""
    return store_opener(ChainIndex, FILE_NAME, durable=False, snapshot_every=EVERY)


def _apply(idx: ChainIndex, ch: Chain, block: BlockRef, *events: Any, rollback_to: int | None = None) -> None:
    idx.apply(list(events), [block], cursor=block.number, head=block.number, rollback_to=rollback_to)


def _grow(idx: ChainIndex, count: int, chunk: int = 400) -> tuple[Chain, list[BlockRef]]:
    """A new chain applied to ``idx``: group 0 created, then ``count`` members added,
    ``chunk`` per block; the chain and its blocks."""
    ch = Chain()
    b = ch.block()
    _apply(idx, ch, b, ch.create(b, 0))
    blocks = [b]
    for start in range(0, count, chunk):
        b = ch.block()
        _apply(idx, ch, b, ch.add(b, 0, VALUES[start : start + chunk]))
        blocks.append(b)
    return ch, blocks


def _row(idx: ChainIndex, group: int = 0) -> tuple[int, int, int] | None:
    with idx.database.connection() as conn:
        row = conn.execute("SELECT block, size, root FROM tree_snapshots WHERE group_id = ?", (group,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def _changes_after_the_snapshot(idx: ChainIndex, ch: Chain) -> None:
    """Updates, removals (an old leaf, a new one) and appends, fewer than EVERY."""
    b, size = ch.block(), ch.trees[0].size
    _apply(
        idx, ch, b,
        ch.update(b, 0, 5, VALUES[2_500]),
        ch.remove(b, 0, 17, log_index=1),
        ch.add(b, 0, VALUES[2_400:2_450], log_index=2),
        ch.remove(b, 0, size + 5, log_index=3),  # VALUES[2_405]
        ch.add(b, 0, [VALUES[17]], log_index=4),  # a removed value added again
    )


def test_an_index_of_schema_version_1_gains_the_table(open_index: OpenIndex) -> None:
    assert [m.version for m in MIGRATIONS] == [1, 2]
    old = open_index()
    ch, _ = _grow(old, 400)
    with old.database.connection() as conn:  # as an index written before step 2
        conn.execute("DROP INDEX idx_members_group_id_block_number")
        conn.execute("DROP TABLE tree_snapshots")
        conn.execute("UPDATE zkid_schema_version SET version = 1")
    upgraded = open_index(snapshot_every=400)
    assert upgraded.snapshot_stats["rebuilt"] == 1 and upgraded.tree(0).root == ch.trees[0].root
    b = ch.block()
    _apply(upgraded, ch, b)  # 400 leaves rebuilt, none snapshotted: due at the next apply
    assert upgraded.snapshot_stats["saved"] == 1 and _row(upgraded) == (b.number, 400, ch.trees[0].root)


def test_a_reopened_index_restores_the_group_from_its_snapshot(open_index: OpenIndex) -> None:
    leader = open_index()
    ch, blocks = _grow(leader, 2_000)
    # Written after each apply that brought 500 unsaved changes: at 800 and 1,600 members.
    assert leader.snapshot_stats["saved"] == 2
    assert _row(leader) == (blocks[-2].number, 1_600, LeanIMT(leaves=VALUES[:1_600], unique=False).root)
    _changes_after_the_snapshot(leader, ch)
    assert leader.snapshot_stats["saved"] == 2  # 400 + 54 changes since: not yet due
    reopened = open_index()
    assert reopened.snapshot_stats == {"restored": 1, "rejected": 0, "rebuilt": 0, "saved": 0, "skipped": 0}
    assert reopened.tree(0).root == ch.trees[0].root == leader.tree(0).root
    assert reopened.tree(0).export() == leader.tree(0).export()
    assert reopened.has_member(0, VALUES[17]) and not reopened.has_member(0, VALUES[2_405])
    assert reopened.tree(0).index_of(VALUES[17]) == ch.trees[0].index_of(VALUES[17])
    # The reopened index goes on applying (and snapshotting) on the restored tree.
    b = ch.block()
    _apply(reopened, ch, b, ch.add(b, 0, VALUES[2_450:2_600]))
    assert reopened.tree(0).root == ch.trees[0].root
    assert reopened.snapshot_stats["saved"] == 1 and _row(reopened) == (b.number, ch.trees[0].size, ch.trees[0].root)
    assert open_index().snapshot_stats["restored"] == 1


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE tree_snapshots SET levels = ? WHERE group_id = 0",  # a flipped byte
        "UPDATE tree_snapshots SET block = block + 1000 WHERE group_id = 0",  # stale: the later rows unseen
        "UPDATE tree_snapshots SET root = 'x' WHERE group_id = 0",
    ],
)
def test_a_damaged_snapshot_falls_back_to_the_rebuild(open_index: OpenIndex, damage: str) -> None:
    leader = open_index()
    ch, _ = _grow(leader, 1_200)
    _changes_after_the_snapshot(leader, ch)
    with leader.database.connection() as conn:
        if "?" in damage:
            levels = bytearray(conn.execute("SELECT levels FROM tree_snapshots WHERE group_id = 0").fetchone()[0])
            levels[len(levels) // 2] ^= 1
            conn.execute(damage, (bytes(levels),))
        else:
            conn.execute(damage)
    reopened = open_index()
    assert reopened.snapshot_stats["rejected"] == 1 and reopened.snapshot_stats["rebuilt"] == 1
    assert reopened.snapshot_stats["restored"] == 0
    assert reopened.tree(0).root == ch.trees[0].root
    assert reopened.tree(0).export() == leader.tree(0).export()
    # The next apply replaces it (every leaf counts as unsaved after a rebuild).
    b = ch.block()
    _apply(reopened, ch, b, ch.add(b, 0, VALUES[2_450:2_460]))
    assert reopened.snapshot_stats["saved"] == 1
    assert open_index().snapshot_stats["restored"] == 1


def test_a_rollback_below_the_snapshot_drops_it(open_index: OpenIndex) -> None:
    leader = open_index()
    ch, blocks = _grow(leader, 2_000)
    snapshot_block = _row(leader)
    assert snapshot_block is not None and snapshot_block[0] == blocks[-2].number
    ancestor = blocks[2]  # 800 members: below the snapshot's block
    ch.number = ancestor.number
    alt = ch.block(fork="b")
    ch.trees[0] = LeanIMT(leaves=VALUES[:800], unique=False)
    _apply(leader, ch, alt, ch.remove(alt, 0, 3), rollback_to=ancestor.number)
    # Deleted in the rollback's transaction (the group's reload did not even try it) ...
    assert leader.snapshot_stats["rebuilt"] == 1 and leader.snapshot_stats["rejected"] == 0
    assert leader.tree(0).root == ch.trees[0].root and leader.tree(0).size == 800
    # ... and replaced after it: 800 leaves rebuilt count as unsaved.
    assert leader.snapshot_stats["saved"] == 3 and _row(leader) == (alt.number, 800, ch.trees[0].root)
    reopened = open_index()
    assert reopened.snapshot_stats["restored"] == 1
    assert reopened.tree(0).export() == leader.tree(0).export()


def test_a_rollback_below_the_snapshot_leaves_none_if_none_is_due(open_index: OpenIndex) -> None:
    leader = open_index()
    ch, blocks = _grow(leader, 1_200)
    assert _row(leader) is not None
    with leader.lock:
        leader.snapshot_every = 10_000
    ch.number = blocks[1].number
    alt = ch.block(fork="b")
    ch.trees[0] = LeanIMT(leaves=VALUES[:400], unique=False)
    _apply(leader, ch, alt, rollback_to=blocks[1].number)
    assert _row(leader) is None and leader.tree(0).root == ch.trees[0].root
    reopened = open_index()
    assert reopened.snapshot_stats["rebuilt"] == 1 and reopened.tree(0).export() == leader.tree(0).export()


def test_a_rollback_above_the_snapshot_keeps_it(open_index: OpenIndex) -> None:
    leader = open_index()
    ch, blocks = _grow(leader, 2_000)
    row = _row(leader)
    assert row is not None and row[0] == blocks[-2].number
    _changes_after_the_snapshot(leader, ch)
    ch.number = blocks[-1].number  # the changes' block vanishes
    alt = ch.block(fork="b")
    ch.trees[0] = LeanIMT(leaves=VALUES[:2_000], unique=False)
    _apply(leader, ch, alt, ch.update(alt, 0, 9, VALUES[2_599]), rollback_to=blocks[-1].number)
    assert _row(leader) == row
    assert leader.snapshot_stats["restored"] == 1  # the rolled-back group reloaded from it
    assert leader.tree(0).root == ch.trees[0].root
    reopened = open_index()
    assert reopened.snapshot_stats["restored"] == 1 and reopened.tree(0).export() == leader.tree(0).export()


def test_a_snapshot_captured_before_a_rollback_is_not_written(open_index: OpenIndex) -> None:
    leader, other = open_index(), open_index()
    ch, blocks = _grow(leader, 800)
    assert leader.snapshot_stats["saved"] == 1 and _row(leader) is not None
    with leader.lock:  # as apply does after its commit, with 500 changes unsaved
        leader._unsaved[0] = EVERY
        captures = leader._capture_due(blocks[-1].number, 0)
    assert len(captures) == 1 and captures[0][2] == 0  # rollbacks counter: none yet
    ch.number = blocks[1].number
    alt = ch.block(fork="b")
    ch.trees[0] = LeanIMT(leaves=VALUES[:400], unique=False)
    _apply(other, ch, alt, rollback_to=blocks[1].number)  # another leader, meanwhile
    assert _row(other) is None
    leader._save_snapshots(captures)
    assert leader.snapshot_stats["skipped"] == 1 and _row(leader) is None
    assert leader._unsaved[0] == EVERY  # still due: its next apply reloads the group and recounts


def test_an_older_snapshot_never_replaces_a_newer_one(open_index: OpenIndex) -> None:
    leader = open_index()
    ch, blocks = _grow(leader, 1_200)
    newer = _row(leader)
    assert newer is not None and newer[0] == blocks[-2].number
    assert leader.snapshot_stats["saved"] == 1
    stale = LeanIMT(leaves=VALUES[:400], unique=False)
    leader._unsaved[0] = EVERY
    leader._save_snapshots([(0, EVERY, 0, tree_snapshot.capture(stale, blocks[1].number))])
    assert leader.snapshot_stats["skipped"] == 1 and leader.snapshot_stats["saved"] == 1
    assert _row(leader) == newer
    assert leader._unsaved[0] == 0  # covered by the newer one: not retried after every apply


def test_a_follower_reloads_from_the_snapshot(open_index: OpenIndex) -> None:
    leader = open_index()
    ch, _ = _grow(leader, 1_200)
    follower = open_index()  # its first refresh: a full reload
    assert follower.snapshot_stats["restored"] == 1 and follower.tree(0).root == ch.trees[0].root
    _changes_after_the_snapshot(leader, ch)  # an update and removals: the group reloads
    assert follower.refresh() is True
    assert follower.snapshot_stats["restored"] == 2 and follower.snapshot_stats["rebuilt"] == 0
    assert follower.tree(0).export() == leader.tree(0).export()
    assert follower.snapshot_stats["saved"] == 0 and follower.tree(0).root == ch.trees[0].root
    leader.reset()
    assert follower.refresh() is True and follower.groups() == []
    assert _row(leader) is None


def test_no_snapshot_is_written_before_the_cursor_reaches_the_head(open_index: OpenIndex) -> None:
    """A backfill applies chunk after chunk below the head: one snapshot at its end."""
    idx = open_index()
    ch = Chain()
    b = ch.block()
    idx.apply([ch.create(b, 0)], [b], cursor=b.number, head=b.number + 10)
    for start in range(0, 1_200, 400):
        b = ch.block()
        idx.apply([ch.add(b, 0, VALUES[start : start + 400])], [b], cursor=b.number, head=b.number + 10)
    assert idx.snapshot_stats["saved"] == 0 and _row(idx) is None
    b = ch.block()
    idx.apply([], [b], cursor=b.number, head=b.number)
    assert idx.snapshot_stats["saved"] == 1 and _row(idx) == (b.number, 1_200, ch.trees[0].root)


def test_snapshot_every_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ChainIndex(tmp_path / FILE_NAME, snapshot_every=0)
