"""Snapshots of the chain index's group trees, so a large group reloads in seconds.

The chain index (:mod:`registry.service.index`) keeps a :class:`zk.tree.LeanIMT` per
group. Rebuilding it from the ``members`` rows costs one Poseidon hash per leaf (a minute
or more for a million members here); reloading its levels from a snapshot takes seconds
(BENCHMARKS.md, "Scale of one group").

A snapshot is bytes (:mod:`zk.tree_levels`: every level, a SHA-256 digest) plus three
values kept beside them in the database: ``size``, ``root`` and ``block``. ``block`` is
the index cursor when it was taken: every ``members`` row with ``block_number <= block``
is in it, and every later change (a row whose ``block_number > block``) is not. Restoring
(:func:`restore`) loads the levels, replays those later rows onto them and accepts the
tree only if its root equals the group's current root, which the index checked against
every event's ``newRoot`` from the chain. Since the root is a Poseidon commitment to all
leaves, a stale, partial or corrupted snapshot is refused (:class:`SnapshotRejected`)
and the caller rebuilds from the rows as before; a snapshot can only make start-up
faster, never change what the index serves.

A rollback restores older ``members`` rows (with their older block numbers), which the
replay cannot see: snapshots taken above the rollback's ancestor must be deleted with it.

The functions work on bytes and plain values so that any database (SQLite BLOB,
PostgreSQL BYTEA) can hold them, e.g.::

    CREATE TABLE tree_snapshots (group_id INTEGER PRIMARY KEY, block INTEGER NOT NULL,
        size INTEGER NOT NULL, root TEXT NOT NULL, levels BLOB NOT NULL)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zk.tree import LeanIMT, TreeError
from zk.tree_levels import SnapshotFormatError, copy_levels, encode_levels, load_levels

if TYPE_CHECKING:  # only the type: the ledger package pulls in web3, slow to import
    from registry.ledger.base import LedgerEvent

__all__ = [
    "SNAPSHOT_EVERY",
    "SnapshotRejected",
    "TreeSnapshot",
    "Capture",
    "capture",
    "restore",
    "leaf_changes",
]

#: Leaf changes in a group after which a new snapshot is worth taking: replaying at most
#: this many rows at start stays around a second (appends are replayed as one batch, about
#: one hash each; an update or removal costs ~20).
SNAPSHOT_EVERY = 20_000

_LEAF_EVENTS = ("MemberAdded", "MembersAdded", "MemberUpdated", "MemberRemoved")


class SnapshotRejected(Exception):
    """A snapshot that cannot be used (format, digest, shape, replay or root mismatch).

    The message names the reason, never a value; the caller rebuilds from the rows.
    """


@dataclass(frozen=True)
class TreeSnapshot:
    """What one ``tree_snapshots`` row holds (``levels``: :mod:`zk.tree_levels` bytes)."""

    block: int
    size: int
    root: int
    levels: bytes


class Capture:
    """The levels of a tree at one moment, copied cheaply (a list copy per level, no
    hashing or encoding) so that :meth:`encode` can run outside the index lock."""

    __slots__ = ("block", "_levels")

    def __init__(self, tree: LeanIMT, block: int) -> None:
        self.block = block
        self._levels = copy_levels(tree)

    def encode(self) -> TreeSnapshot:
        """The snapshot row (1-2 s for a million leaves: run it outside the index lock)."""
        top = self._levels[-1]
        return TreeSnapshot(
            block=self.block,
            size=len(self._levels[0]),
            root=top[0] if top else 0,
            levels=encode_levels(self._levels),
        )


def capture(tree: LeanIMT, block: int) -> Capture:
    """Freeze ``tree`` as it is after every change up to ``block`` (hold the index lock)."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 0:
        raise ValueError("block must be a non-negative integer")
    return Capture(tree, block)


def restore(
    snapshot: TreeSnapshot,
    changes: Iterable[tuple[int, int, bool]],
    current_root: int,
) -> LeanIMT:
    """The group's tree from ``snapshot`` plus the rows changed after it.

    ``changes``: ``(idx, commitment, removed)`` of every ``members`` row of the group with
    ``block_number > snapshot.block``, in any order. ``current_root``: the group's current
    root in the index (0 if none is recorded, as for an empty group). Raises
    :class:`SnapshotRejected` if the result is not exactly that tree.
    """
    try:
        tree = load_levels(snapshot.levels, unique=False)
    except SnapshotFormatError as exc:
        raise SnapshotRejected(f"unreadable snapshot: {exc}") from None
    if tree.size != snapshot.size or tree.root != snapshot.root:
        raise SnapshotRejected("the snapshot's levels do not match its size and root")
    try:
        _replay(tree, sorted(changes))
    except TreeError:
        raise SnapshotRejected("the changes since the snapshot do not apply to it") from None
    if tree.root != current_root:
        raise SnapshotRejected("the restored tree's root is not the group's current root")
    return tree


def _replay(tree: LeanIMT, rows: list[tuple[int, int, bool]]) -> None:
    """Apply the final state of changed leaves: edits in place, then appended leaves."""
    size = tree.size
    appended = [(idx, c, removed) for idx, c, removed in rows if idx >= size]
    for idx, commitment, removed in rows:
        if idx >= size:
            break
        current = tree.leaf(idx)
        if removed:
            if current != 0:
                tree.remove(idx)
        elif current != commitment:
            tree.update(idx, commitment)
    if not appended:
        return
    if [idx for idx, _, _ in appended] != list(range(size, size + len(appended))):
        raise TreeError("the appended rows are not contiguous")
    tree.insert_many([c for _, c, _ in appended])
    for idx, _, removed in appended:
        if removed:
            tree.remove(idx)


def leaf_changes(events: Iterable[LedgerEvent]) -> dict[int, int]:
    """Leaves changed per group by ``events`` (to decide when a new snapshot is due)."""
    counts: dict[int, int] = {}
    for ev in events:
        if ev.name not in _LEAF_EVENTS:
            continue
        group_id = int(ev.args["groupId"])
        n = len(ev.args["commitments"]) if ev.name == "MembersAdded" else 1
        counts[group_id] = counts.get(group_id, 0) + n
    return counts
