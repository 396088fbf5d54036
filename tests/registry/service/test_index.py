"""ChainIndex on its own: applying events, idempotence, rollback, root validity, reopening,
and follower replicas keeping their trees current (refresh).

Events are built by hand here (their newRoot computed with an independent LeanIMT); the
indexer tests check the same things against events of the real contract on Anvil. Every
test not about SQLite files runs against both backends (``database_url``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from registry.service.authorization import RootStatus
from registry.service.index import FILE_NAME, BlockRef, ChainIndex, IndexInconsistency, delete_index_files
from registry.ledger.base import LedgerEvent
from tests.registry.conftest import StoreOpener, index_snapshot, make_commitments
from zk.tree import LeanIMT

ADMIN = "0x" + "11" * 20
OTHER = "0x" + "22" * 20


class Chain:
    """A hand-made event stream with a mirror tree per group."""

    def __init__(self) -> None:
        self.trees: dict[int, LeanIMT] = {}
        self.number = 100
        self.time = 1_000_000
        self.blocks: list[BlockRef] = []

    def block(self, fork: str = "a", dt: int = 12) -> BlockRef:
        self.number += 1
        self.time += dt
        ref = BlockRef(self.number, f"0x{fork}{self.number:063x}", None, self.time)
        self.blocks.append(ref)
        return ref

    def event(self, block: BlockRef, name: str, log_index: int = 0, **args: object) -> LedgerEvent:
        return LedgerEvent(
            name=name,
            args=dict(args),
            address="0x" + "33" * 20,
            block_number=block.number,
            block_hash=block.hash,
            tx_hash=f"0x{block.number:060x}{log_index:04x}",
            log_index=log_index,
        )

    def create(
        self, block: BlockRef, group: int, window: int = 3600, admin: str = ADMIN, log_index: int = 0
    ) -> LedgerEvent:
        self.trees[group] = LeanIMT(unique=False)
        return self.event(block, "GroupCreated", log_index, groupId=group, admin=admin, rootWindow=window)

    def add(self, block: BlockRef, group: int, values: list[int], log_index: int = 0) -> LedgerEvent:
        self.trees[group].insert_many(values)
        return self.event(block, "MembersAdded", log_index, groupId=group, commitments=values, newRoot=self.trees[group].root)

    def update(self, block: BlockRef, group: int, index: int, new: int, log_index: int = 0) -> LedgerEvent:
        old = self.trees[group].leaf(index)
        self.trees[group].update(index, new)
        return self.event(
            block, "MemberUpdated", log_index, groupId=group, index=index, oldCommitment=old,
            newCommitment=new, newRoot=self.trees[group].root,
        )

    def remove(self, block: BlockRef, group: int, index: int, log_index: int = 0) -> LedgerEvent:
        old = self.trees[group].leaf(index)
        self.trees[group].remove(index)
        return self.event(
            block, "MemberRemoved", log_index, groupId=group, index=index, commitment=old, newRoot=self.trees[group].root
        )


OpenIndex = Callable[[], ChainIndex]


@pytest.fixture
def open_index(store_opener: StoreOpener) -> OpenIndex:
    """``open_index()``: a ChainIndex on this test's database (the same file or PostgreSQL
    database on every call: a reopening, or another replica)."""
    return store_opener(ChainIndex, FILE_NAME, durable=False)


@pytest.fixture
def index(open_index: OpenIndex) -> ChainIndex:
    return open_index()


def test_apply_builds_groups_members_roots(index: ChainIndex) -> None:
    ch = Chain()
    values = make_commitments(5)
    b1 = ch.block()
    b2 = ch.block()
    events = [ch.create(b1, 0), ch.add(b2, 0, values[:3]), ch.add(b2, 0, values[3:], log_index=1)]
    assert index.apply(events, ch.blocks, cursor=b2.number, head=b2.number + 3) == 3
    assert index.cursor == b2.number and index.head == b2.number + 3
    assert index.tree(0).root == ch.trees[0].root and index.tree(0).size == 5
    member = index.member(0, values[4])
    assert member is not None and member.index == 4 and member.block_number == b2.number
    assert index.has_member(0, values[0]) and not index.has_member(0, 12345) and not index.has_member(9, values[0])
    roots = index.roots(0)
    assert len(roots) == 2
    assert roots[0].superseded_block == b2.number and roots[0].superseded_time == b2.timestamp
    assert roots[1].root == ch.trees[0].root and roots[1].superseded_time is None
    group = index.group(0)
    assert group is not None and group.admin == ADMIN and group.root_window == 3600


def test_applying_the_same_logs_twice_changes_nothing(index: ChainIndex) -> None:
    ch = Chain()
    b1 = ch.block()
    events = [ch.create(b1, 0), ch.add(b1, 0, make_commitments(4), log_index=1)]
    index.apply(events, ch.blocks, cursor=b1.number, head=b1.number)
    before = index_snapshot(index)
    assert index.apply(events, ch.blocks, cursor=b1.number, head=b1.number) == 0
    assert index_snapshot(index) == before


def test_wrong_new_root_is_refused_and_nothing_changes(index: ChainIndex) -> None:
    ch = Chain()
    b1 = ch.block()
    index.apply([ch.create(b1, 0), ch.add(b1, 0, [5, 6], log_index=1)], ch.blocks, cursor=b1.number, head=b1.number)
    before = index_snapshot(index)
    b2 = ch.block()
    bad = ch.event(b2, "MembersAdded", groupId=0, commitments=[7, 8], newRoot=123)
    with pytest.raises(IndexInconsistency):
        index.apply([bad], [b2], cursor=b2.number, head=b2.number)
    assert index_snapshot(index) == before  # SQL rolled back, tree reloaded


def test_member_event_of_unknown_group_is_refused(index: ChainIndex) -> None:
    ch = Chain()
    b1 = ch.block()
    ch.trees[4] = LeanIMT()
    with pytest.raises(IndexInconsistency):
        index.apply([ch.add(b1, 4, [1])], [b1], cursor=b1.number, head=b1.number)
    assert index.cursor is None


def test_rollback_restores_updates_removals_roots_and_group_settings(index: ChainIndex) -> None:
    ch = Chain()
    values = make_commitments(6)
    b1, b2 = ch.block(), ch.block()
    index.apply(
        [ch.create(b1, 0, window=100), ch.add(b2, 0, values[:4])], ch.blocks, cursor=b2.number, head=b2.number
    )
    kept = index_snapshot(index)
    kept_root = index.tree(0).root
    b3, b4 = ch.block(), ch.block()
    later = [
        ch.update(b3, 0, 1, values[4]),
        ch.remove(b3, 0, 2, log_index=1),
        ch.event(b3, "RootWindowChanged", 2, groupId=0, oldWindow=100, newWindow=5),
        ch.event(b3, "GroupAdminTransferStarted", 3, groupId=0, admin=ADMIN, pendingAdmin=OTHER),
        ch.event(b4, "GroupAdminTransferred", 0, groupId=0, oldAdmin=ADMIN, newAdmin=OTHER),
        ch.create(b4, 1),
        ch.add(b4, 0, [values[5]], log_index=2),
        ch.update(b4, 0, 4, values[2], log_index=3),  # re-adds a removed value elsewhere
    ]
    index.apply(later, [b3, b4], cursor=b4.number, head=b4.number)
    assert index.tree(0).root == ch.trees[0].root
    group = index.group(0)
    assert group is not None and group.admin == OTHER and group.root_window == 5 and group.pending_admin is None
    assert index.member(0, values[1]) is None and index.member(0, values[4]) is not None
    assert index.root_status(0, kept_root, now=b3.timestamp + 10**6) is RootStatus.EXPIRED

    # The two blocks vanish; a different block 3 replaces them (all in one transaction).
    ch.number = b2.number
    alt = ch.block(fork="b")
    applied = index.apply([], [alt], cursor=alt.number, head=alt.number, rollback_to=b2.number)
    assert applied == 0
    after = index_snapshot(index)
    assert after["members"] == kept["members"] and after["roots"] == kept["roots"]
    assert after["groups"] == kept["groups"] and after["trees"] == kept["trees"]
    assert index.group(1) is None
    assert index.cursor == alt.number and index.block_hash(alt.number) == alt.hash
    assert index.block_hash(b4.number) is None
    assert index.root_status(0, kept_root, now=10**12) is RootStatus.VALID  # current again


def test_block_replaced_without_rollback_is_refused(index: ChainIndex) -> None:
    ch = Chain()
    b1 = ch.block()
    index.apply([ch.create(b1, 0)], [b1], cursor=b1.number, head=b1.number)
    other = BlockRef(b1.number, "0x" + "ee" * 32, None, b1.timestamp)
    with pytest.raises(IndexInconsistency):
        index.apply([], [other], cursor=b1.number, head=b1.number)


def test_root_status_follows_the_contract_rule(index: ChainIndex) -> None:
    ch = Chain()
    b1 = ch.block()
    index.apply([ch.create(b1, 0, window=60), ch.add(b1, 0, [10, 11], log_index=1)], ch.blocks, cursor=b1.number, head=b1.number)
    r1 = index.tree(0).root
    b2 = ch.block(dt=30)
    index.apply([ch.add(b2, 0, [12])], [b2], cursor=b2.number, head=b2.number)
    r2 = index.tree(0).root
    t = b2.timestamp  # r1 superseded at t
    assert index.root_status(0, r2, now=t + 10**9) is RootStatus.VALID  # current: never expires
    assert index.root_status(0, r1, now=t + 60) is RootStatus.VALID  # boundary: <= window
    assert index.root_status(0, r1, now=t + 61) is RootStatus.EXPIRED
    assert index.root_status(1, r1, now=t) is RootStatus.UNKNOWN  # another group
    assert index.root_status(0, 999, now=t) is RootStatus.UNKNOWN
    assert index.root_status(0, 0, now=t) is RootStatus.UNKNOWN
    info = index.root_info(r1, now=t + 61)
    assert info is not None
    assert info["group_id"] == 0 and info["current"] is False and info["valid"] is False
    assert info["superseded_at"] == t and info["valid_until"] == t + 60 and info["created_block"] == b1.number
    info2 = index.root_info(r2, now=t)
    assert info2 is not None and info2["current"] and info2["valid"] and info2["valid_until"] is None
    assert index.root_info(424242) is None


def test_recurring_root_counts_its_latest_time(index: ChainIndex) -> None:
    """Updating a->b then b->a brings an old root back: it is current (valid) again, and
    when superseded later its window counts from that later time (as the contract's
    rootSupersededAt mapping, which is overwritten)."""
    ch = Chain()
    b1 = ch.block()
    index.apply([ch.create(b1, 0, window=10), ch.add(b1, 0, [1, 2], log_index=1)], ch.blocks, cursor=b1.number, head=b1.number)
    r_a = index.tree(0).root
    b2 = ch.block(dt=100)
    b3 = ch.block(dt=100)
    index.apply([ch.update(b2, 0, 0, 3), ch.update(b3, 0, 0, 1)], [b2, b3], cursor=b3.number, head=b3.number)
    assert index.tree(0).root == r_a
    assert index.root_status(0, r_a, now=b3.timestamp + 10**6) is RootStatus.VALID
    b4 = ch.block(dt=100)
    index.apply([ch.add(b4, 0, [4])], [b4], cursor=b4.number, head=b4.number)
    assert index.root_status(0, r_a, now=b4.timestamp + 10) is RootStatus.VALID
    assert index.root_status(0, r_a, now=b4.timestamp + 11) is RootStatus.EXPIRED


def test_reopening_rebuilds_trees_with_removed_and_readded_members(open_index: OpenIndex) -> None:
    idx = open_index()
    ch = Chain()
    values = make_commitments(5)
    b1, b2 = ch.block(), ch.block()
    events = [ch.create(b1, 0), ch.add(b1, 0, values, log_index=1), ch.remove(b2, 0, 1)]
    b3 = ch.block()
    events.append(ch.add(b3, 0, [values[1]]))  # removed, then added again at index 5
    events.append(ch.create(b3, 1, window=7))
    idx.apply(events, ch.blocks, cursor=b3.number, head=b3.number)
    before = index_snapshot(idx)
    idx.close()
    again = open_index()
    assert index_snapshot(again) == before
    assert again.tree(0).root == ch.trees[0].root
    member = again.member(0, values[1])
    assert member is not None and member.index == 5
    leaf = again.last_leaf_of(0, values[1])
    assert leaf is not None and leaf.index == 5 and not leaf.removed
    again.close()


def test_bind_to_another_deployment_wipes_and_reset(open_index: OpenIndex) -> None:
    idx = open_index()
    assert idx.bind(1, "0x" + "aa" * 20, "0x" + "01" * 32) is True
    ch = Chain()
    b1 = ch.block()
    idx.apply([ch.create(b1, 0), ch.add(b1, 0, [9], log_index=1)], [b1], cursor=b1.number, head=b1.number)
    assert idx.bind(1, "0x" + "AA" * 20, "0x" + "01" * 32) is False  # same deployment
    assert idx.group(0) is not None
    assert idx.bind(1, "0x" + "bb" * 20, "0x" + "01" * 32) is True
    assert idx.group(0) is None and idx.cursor is None and idx.event_count() == 0
    with pytest.raises(KeyError):
        idx.tree(0)
    idx.apply([ch.create(b1, 0)], [b1], cursor=b1.number, head=b1.number)
    idx.reset()
    assert idx.groups() == [] and idx.cursor is None


def test_deleting_the_index_files_leaves_nothing(tmp_path: Path) -> None:
    idx = ChainIndex(tmp_path / FILE_NAME)
    ch = Chain()
    b1 = ch.block()
    idx.apply([ch.create(b1, 0), ch.add(b1, 0, [9], log_index=1)], [b1], cursor=b1.number, head=b1.number)
    idx.close()
    delete_index_files(tmp_path / FILE_NAME)
    assert not any(tmp_path.iterdir())


def test_event_block_without_timestamp_is_refused(index: ChainIndex) -> None:
    ch = Chain()
    b1 = ch.block()
    index.apply([ch.create(b1, 0)], [b1], cursor=b1.number, head=b1.number)
    ch.number += 1
    bare = BlockRef(ch.number, "0x" + "cc" * 32, None, None)
    with pytest.raises(ValueError):
        index.apply([ch.add(bare, 0, [3])], [bare], cursor=bare.number, head=bare.number)
    assert index.cursor == b1.number


def test_a_null_tx_hash_reads_as_none_not_the_string_none(index: ChainIndex) -> None:
    """``members.tx_hash`` is a nullable column (files written before it was always set):
    a NULL there is no transaction, not a transaction called "None"."""
    ch = Chain()
    values = make_commitments(2)
    b1 = ch.block()
    idx = index
    idx.apply([ch.create(b1, 0), ch.add(b1, 0, values, log_index=1)], ch.blocks, cursor=b1.number, head=b1.number)
    with idx.database.connection() as conn:
        conn.execute("UPDATE members SET tx_hash = NULL WHERE group_id = 0 AND idx = 0")
    member = idx.member(0, values[0])
    assert member is not None and member.tx_hash is None
    assert [m.tx_hash for m in idx.members(0)][0] is None
    other = idx.member(0, values[1])
    assert other is not None and other.tx_hash == f"0x{b1.number:060x}{1:04x}"


# ---------------------------------------------------------------------------- replicas
# Two ChainIndex objects on one database: the leader applies, the follower refreshes.

Replicas = tuple[ChainIndex, ChainIndex, Chain]


@pytest.fixture
def replicas(open_index: OpenIndex) -> Replicas:
    """The leader, the follower, and a new Chain for the leader to apply."""
    return open_index(), open_index(), Chain()


def test_a_follower_inserts_appended_leaves_into_its_trees(replicas: Replicas) -> None:
    leader, follower, ch = replicas
    assert follower.refresh() is False  # nothing written yet: one read, nothing loaded
    values = make_commitments(7)
    b1 = ch.block()
    leader.apply([ch.create(b1, 0), ch.add(b1, 0, values[:3], log_index=1)], [b1], cursor=b1.number, head=b1.number)
    with pytest.raises(KeyError):
        follower.tree(0)
    assert follower.refresh() is True
    tree = follower.tree(0)
    assert tree.root == ch.trees[0].root and follower.has_member(0, values[2])
    assert follower.refresh() is False  # nothing changed since
    b2, b3 = ch.block(), ch.block()
    leader.apply([ch.add(b2, 0, values[3:5])], [b2], cursor=b2.number, head=b2.number)
    leader.apply([ch.add(b3, 0, values[5:]), ch.create(b3, 1, window=9, log_index=1)], [b3], cursor=b3.number, head=b3.number)
    assert follower.refresh() is True
    assert follower.tree(0) is tree  # extended in place, not rebuilt
    assert tree.export() == leader.tree(0).export() and tree.root == ch.trees[0].root
    assert follower.tree(1).size == 0
    assert index_snapshot(follower) == index_snapshot(leader)


def test_a_follower_reloads_a_group_whose_leaves_changed(replicas: Replicas) -> None:
    leader, follower, ch = replicas
    values = make_commitments(6)
    b1 = ch.block()
    leader.apply(
        [ch.create(b1, 0), ch.create(b1, 1, log_index=1), ch.add(b1, 0, values[:3], log_index=2),
         ch.add(b1, 1, values[3:], log_index=3)],
        [b1], cursor=b1.number, head=b1.number,
    )
    follower.refresh()
    tree0, tree1 = follower.tree(0), follower.tree(1)
    b2 = ch.block()
    leader.apply([ch.remove(b2, 0, 1), ch.update(b2, 0, 2, 4242, log_index=1)], [b2], cursor=b2.number, head=b2.number)
    assert follower.refresh() is True
    assert follower.tree(0) is not tree0 and follower.tree(0).root == ch.trees[0].root
    assert not follower.has_member(0, values[1]) and follower.has_member(0, 4242)
    assert follower.tree(1) is tree1  # another group: untouched
    assert index_snapshot(follower) == index_snapshot(leader)


def test_a_follower_follows_a_rollback_and_a_reset(replicas: Replicas) -> None:
    leader, follower, ch = replicas
    values = make_commitments(4)
    b1 = ch.block()
    leader.apply([ch.create(b1, 0), ch.add(b1, 0, values[:2], log_index=1)], [b1], cursor=b1.number, head=b1.number)
    kept_root = ch.trees[0].root
    b2 = ch.block()
    leader.apply([ch.add(b2, 0, values[2:]), ch.create(b2, 1, log_index=1)], [b2], cursor=b2.number, head=b2.number)
    follower.refresh()
    assert follower.tree(0).size == 4 and follower.tree(1).size == 0
    ch.number = b1.number
    alt = ch.block(fork="b")
    leader.apply([], [alt], cursor=alt.number, head=alt.number, rollback_to=b1.number)
    assert follower.refresh() is True
    assert follower.tree(0).root == kept_root and follower.tree(0).size == 2
    with pytest.raises(KeyError):
        follower.tree(1)  # created in a vanished block
    assert index_snapshot(follower) == index_snapshot(leader)
    leader.reset()
    assert follower.refresh() is True
    assert follower.groups() == [] and not follower.has_member(0, values[0])
    with pytest.raises(KeyError):
        follower.tree(0)


def test_a_follower_that_becomes_leader_applies_on_what_the_old_leader_wrote(replicas: Replicas) -> None:
    """No refresh in between: apply catches up inside its serialised transaction (else the
    newRoot check of the next addition would refuse it)."""
    old, new, ch = replicas
    values = make_commitments(5)
    b1 = ch.block()
    old.apply([ch.create(b1, 0), ch.add(b1, 0, values[:2], log_index=1)], [b1], cursor=b1.number, head=b1.number)
    new.refresh()
    b2 = ch.block()
    old.apply([ch.add(b2, 0, values[2:4]), ch.remove(b2, 0, 0, log_index=1)], [b2], cursor=b2.number, head=b2.number)
    b3 = ch.block()
    assert new.apply([ch.add(b3, 0, values[4:])], [b3], cursor=b3.number, head=b3.number) == 1
    assert new.tree(0).root == ch.trees[0].root
    assert old.refresh() is True and index_snapshot(old) == index_snapshot(new)


def test_a_follower_refuses_leaves_that_do_not_give_the_stored_root(replicas: Replicas) -> None:
    leader, follower, ch = replicas
    b1 = ch.block()
    leader.apply([ch.create(b1, 0), ch.add(b1, 0, [5, 6], log_index=1)], [b1], cursor=b1.number, head=b1.number)
    follower.refresh()
    b2 = ch.block()
    leader.apply([ch.add(b2, 0, [7])], [b2], cursor=b2.number, head=b2.number)
    with leader.database.connection() as conn:  # a damaged index: the appended leaf altered
        conn.execute("UPDATE members SET commitment = ? WHERE group_id = 0 AND idx = 2", ("8",))
    with pytest.raises(IndexInconsistency):
        follower.refresh()
