"""The chain index: a local, rebuildable copy of the registry contract's state.

Everything here is derived from the ``ZkIdRegistry`` events (``contracts/ZkIdRegistry.sol``:
each state change emits an event carrying the new root), so ``data_dir/index.sqlite`` may
be deleted at any time and rebuilt from the chain (:mod:`registry.service.indexer`).

Tables (SQLite in WAL mode, or the ``zkid_index`` schema of a shared PostgreSQL database:
:mod:`registry.storage.database`; schema versions: :data:`MIGRATIONS`):

- ``blocks(number, hash, parent_hash, timestamp)``: the blocks the index relies on (every
  block with an event, the recent ones, the cursor); used to detect reorganisations.
- ``events(block_hash, log_index, ...)``: every decoded event, keyed by (block hash, log
  index) so that applying the same log twice changes nothing.
- ``groups``, ``members`` (one row per leaf: commitment, block, tx, removed flag) and
  ``roots`` (one row per time a root became current: created/superseded block and time).
- ``member_history``: the previous value of a leaf changed by an update or removal, so a
  reorganisation can restore it; ``cursor``: the last indexed block and the head seen.
- ``meta``: the deployment, the rollback mark, and the change counters followers read
  (``serial``, ``generation``, ``generation:<group>``: :meth:`ChainIndex.refresh`).

Root validity follows the contract exactly (``ZkIdRegistry.isRootValid``): the current
root is valid, a superseded root stays valid while ``now - superseded_time <= root
window`` (the window of the group now), root 0 never is.

A reorganisation rolls everything above the common ancestor back (``apply(...,
rollback_to=n)``) in the same transaction that re-applies the new blocks and moves
the cursor (chain indexing practice: bounded ``eth_getLogs`` chunks, block hashes and
parents stored, idempotent upserts keyed by block hash and log index).

An in-memory :class:`zk.tree.LeanIMT` per group mirrors the leaves; it is loaded at open and
after a rollback, and every applied event's ``newRoot`` is checked against it, so a missed
or misread event is caught at once. Loading a group restores it from its row in
``tree_snapshots`` (:mod:`registry.service.tree_snapshot`: the tree's levels at a block,
plus the ``members`` rows changed after that block, accepted only if the root equals the
group's current root row) and otherwise rebuilds it from every ``members`` row (one
Poseidon hash per leaf: minutes for a million members). The leader writes a new snapshot
of a group after :attr:`ChainIndex.snapshot_every` leaf changes; a rollback deletes the
snapshots above its ancestor. With several
replicas on one PostgreSQL index only the leader writes; followers keep their trees
current with :meth:`ChainIndex.refresh` (appended leaves are inserted, a group whose
leaves changed otherwise is reloaded).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry._utils.logs import exc_type
from registry.service import tree_snapshot
from registry.service.authorization import RootStatus
from registry.ledger.base import LedgerEvent
from registry.storage.database import Database, DatabaseStore, SqliteDatabase
from registry.storage.migrations import Migration, migrate
from registry.storage.sqlite import transaction as sqlite_transaction
from zk.tree import LeanIMT

log = logging.getLogger("registry.service.index")

FILE_NAME = "index.sqlite"
SCHEMA_VERSION = "1"
#: Blocks without events are kept this far below the cursor (reorganisation detection).
KEEP_RECENT_BLOCKS = 256

_ADD_EVENTS = ("MemberAdded", "MembersAdded")
_LEAF_CHANGES = ("MemberUpdated", "MemberRemoved")
#: ``meta`` keys bumped by every write that changes the index (``serial``), and by one that
#: changes leaves other than by appending them (``generation`` for a wipe,
#: ``generation:<group>`` for a group's rollback, update or removal): ChainIndex.refresh.
_SERIAL = "serial"
_GENERATION = "generation"
#: ``meta`` key bumped by every rollback and wipe: a tree snapshot captured before one is
#: not written after it (:meth:`ChainIndex._save_snapshots`).
_ROLLBACKS = "rollbacks"


#: The tables (plain DDL, as every store: :mod:`registry.storage.sqlite`). The index names
#: are those sqlite-utils gave them when it created this schema, so older files match.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY, block INTEGER, head INTEGER, updated_at REAL)",
    "CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, parent_hash TEXT, timestamp INTEGER)",
    "CREATE INDEX IF NOT EXISTS idx_blocks_hash ON blocks (hash)",
    "CREATE TABLE IF NOT EXISTS events (block_hash TEXT, log_index INTEGER, block_number INTEGER NOT NULL,"
    " tx_hash TEXT NOT NULL, name TEXT NOT NULL, group_id INTEGER, data TEXT NOT NULL,"
    " PRIMARY KEY (block_hash, log_index))",
    "CREATE INDEX IF NOT EXISTS idx_events_block_number ON events (block_number)",
    "CREATE INDEX IF NOT EXISTS idx_events_tx_hash ON events (tx_hash)",
    "CREATE INDEX IF NOT EXISTS idx_events_group_id_block_number ON events (group_id, block_number)",
    "CREATE TABLE IF NOT EXISTS groups (group_id INTEGER PRIMARY KEY, admin TEXT NOT NULL, root_window INTEGER NOT NULL,"
    " created_block INTEGER NOT NULL, created_tx TEXT, pending_admin TEXT)",
    "CREATE TABLE IF NOT EXISTS members (group_id INTEGER, idx INTEGER, commitment TEXT NOT NULL,"
    " block_number INTEGER NOT NULL, tx_hash TEXT, removed INTEGER NOT NULL, PRIMARY KEY (group_id, idx))",
    "CREATE INDEX IF NOT EXISTS idx_members_group_id_commitment ON members (group_id, commitment)",
    "CREATE INDEX IF NOT EXISTS idx_members_block_number ON members (block_number)",
    "CREATE TABLE IF NOT EXISTS member_history (block_number INTEGER, log_index INTEGER, group_id INTEGER, idx INTEGER,"
    " old_commitment TEXT, old_block_number INTEGER, old_tx_hash TEXT, old_removed INTEGER,"
    " PRIMARY KEY (block_number, log_index))",
    "CREATE TABLE IF NOT EXISTS roots (group_id INTEGER, root TEXT NOT NULL, created_block INTEGER,"
    " created_log_index INTEGER, created_time INTEGER NOT NULL, superseded_block INTEGER, superseded_time INTEGER,"
    " PRIMARY KEY (group_id, created_block, created_log_index))",
    "CREATE INDEX IF NOT EXISTS idx_roots_root ON roots (root)",
    "CREATE INDEX IF NOT EXISTS idx_roots_group_id_root ON roots (group_id, root)",
    "CREATE INDEX IF NOT EXISTS idx_roots_superseded_block ON roots (superseded_block)",
)

#: Step 2: one snapshot of a group's tree per group (registry/service/tree_snapshot.py),
#: and an index for the rows of a group changed after a snapshot's block (without it
#: SQLite scans the whole group by its primary key: 0.66 s at a million members).
_TREE_SNAPSHOTS = (
    "CREATE TABLE IF NOT EXISTS tree_snapshots (group_id INTEGER PRIMARY KEY, block INTEGER NOT NULL,"
    " size INTEGER NOT NULL, root TEXT NOT NULL, levels BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_members_group_id_block_number ON members (group_id, block_number)",
)

#: Versioned schema (registry/storage/migrations.py): step 1 is the layout above, which
#: index files from before versioning already have.
MIGRATIONS = (Migration(1, _SCHEMA), Migration(2, _TREE_SNAPSHOTS))


class IndexInconsistency(RuntimeError):
    """The events do not reproduce the contract's state (a missed or misread event)."""


@dataclass(frozen=True)
class BlockRef:
    """A block header the index stores (``parent_hash``/``timestamp`` may be unknown)."""

    number: int
    hash: str
    parent_hash: str | None = None
    timestamp: int | None = None


@dataclass(frozen=True)
class MemberRecord:
    group_id: int
    index: int
    commitment: int
    block_number: int
    tx_hash: str | None  # NULL in the members table (a nullable column): None, never "None"
    removed: bool


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class GroupRecord:
    group_id: int
    admin: str
    root_window: int
    created_block: int
    created_tx: str | None
    pending_admin: str | None


@dataclass(frozen=True)
class RootRecord:
    group_id: int
    root: int
    created_block: int
    created_time: int
    superseded_block: int | None
    superseded_time: int | None


def _jsonable(value: Any) -> Any:
    """Event arguments as JSON: integers as decimal strings (they exceed 2^53), bytes as hex."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _build_tree(leaves: Sequence[tuple[int, bool]]) -> LeanIMT:
    """A group's tree from its leaves (commitment, removed).

    ``unique=False``: a removed commitment may be added again later on chain (lean-imt.sol
    clears its leaf entry), so the original values, inserted before the removals are
    replayed, can repeat. The chain itself enforces uniqueness among live leaves.
    """
    tree = LeanIMT(unique=False)
    if leaves:
        tree.insert_many([c for c, _ in leaves])
        for i, (_, removed) in enumerate(leaves):
            if removed:
                tree.remove(i)
    return tree


def _leaf_changes(events: Iterable[LedgerEvent]) -> set[int]:
    """The groups in which ``events`` update or remove a leaf."""
    return {int(ev.args["groupId"]) for ev in events if ev.name in _LEAF_CHANGES}


def delete_index_files(path: Path | str) -> None:
    """Remove an index database with its WAL and shared-memory files."""
    base = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(base) + suffix).unlink(missing_ok=True)


class ChainIndex(DatabaseStore):
    """The index database plus the in-memory trees.

    ``database``: a :class:`registry.storage.database.Database` (SQLite file or PostgreSQL
    schema), or the path of an SQLite file. Thread-safe: every call takes a connection of
    its own; ``lock`` guards writes and the trees (hold it to read a tree consistently,
    e.g. ``with index.lock: proof = index.tree(g).generate_proof(i)``).

    Replicas (docs/deployment.md): several processes may open one PostgreSQL index; only
    the leader's indexer writes it (:meth:`apply`, :meth:`reset`, :meth:`bind`). What is
    per process is the trees (and ``_pruned_below``, an optimisation): a follower brings
    them up to date with :meth:`refresh`, and :meth:`apply` does the same inside its
    serialised transaction before it changes anything, so a follower that becomes leader
    starts from what the old leader committed. Every other read goes to the database.

    ``snapshot_every``: leaf changes in a group after which :meth:`apply` writes a new
    snapshot of its tree (default :data:`registry.service.tree_snapshot.SNAPSHOT_EVERY`).
    :attr:`snapshot_stats` counts what happened to snapshots in this process: trees
    ``restored`` from one, snapshots ``rejected`` (the group was rebuilt instead), trees
    ``rebuilt`` from the rows, snapshots ``saved``, and ``skipped`` (a rollback came between
    capture and write, or a snapshot of a later block was there).
    """

    def __init__(self, database: Path | str | Database, *, snapshot_every: int | None = None) -> None:
        if isinstance(database, Database):
            self._db: Database = database
        else:
            # Rebuildable from the chain: no fsync per commit needed.
            self._db = SqliteDatabase(database, durable=False)
        self.path: Path | None = self._db.path if isinstance(self._db, SqliteDatabase) else None
        self.lock = threading.RLock()
        self._trees: dict[int, LeanIMT] = {}
        self._timestamps: dict[str, int] = {}
        self._pruned_below = 0
        # What the trees reflect: the ``serial`` and ``generation`` meta values (see refresh).
        self._serial: int | None = None
        self._generations: dict[str, int] = {}
        self.snapshot_every = tree_snapshot.SNAPSHOT_EVERY if snapshot_every is None else snapshot_every
        if isinstance(self.snapshot_every, bool) or not isinstance(self.snapshot_every, int) or self.snapshot_every < 1:
            raise ValueError("snapshot_every must be a positive integer")
        self.snapshot_stats = {"restored": 0, "rejected": 0, "rebuilt": 0, "saved": 0, "skipped": 0}
        # Leaf changes per group since its last snapshot (or since it was loaded: all of
        # them if it was rebuilt, those replayed if it was restored).
        self._unsaved: dict[int, int] = {}
        self._stats_lock = threading.Lock()  # snapshot_stats and _unsaved: _read_tree runs unlocked
        self._create_schema()
        self.refresh()

    # ------------------------------------------------------------------ storage

    def _create_schema(self) -> None:
        migrate(self._db, MIGRATIONS)
        with self._db.transaction() as conn:
            version = self._meta(conn, "schema_version")
            if version is None:
                self._set_meta(conn, "schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise IndexInconsistency(
                    f"index schema {version} is not {SCHEMA_VERSION}: run `zkid reindex` to rebuild {self._db.describe}"
                )

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """A read-only transaction seeing one committed state of the whole index."""
        if isinstance(self._db, SqliteDatabase):
            with sqlite_transaction(self._db.raw(), immediate=False) as conn:  # WAL: a read snapshot
                yield conn
        else:
            with self._db.transaction(serialize=False) as conn:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield conn

    def _meta(self, conn: Any, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, conn: Any, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def bind(self, chain_id: int, registry_address: str, deployment_block_hash: str) -> bool:
        """Tie the index to one deployment; an index of another one is wiped.

        Returns True if the index was (re)initialised.
        """
        identity = json.dumps([int(chain_id), registry_address.lower(), deployment_block_hash.lower()])
        with self.lock:
            with self._db.connection() as conn:
                if self._meta(conn, "deployment") == identity:
                    return False
            self._wipe(meta=("deployment", identity))
            return True

    def rolled_back_from(self) -> int | None:
        """The lowest block a rollback removed since :meth:`clear_rollback` last ran
        (None if none): what the outbox must look at again."""
        with self._db.connection() as conn:
            value = self._meta(conn, "rolled_back_from")
        return None if value is None else int(value)

    def clear_rollback(self, seen: int) -> None:
        """Forget the rollback mark if it is still ``seen`` (a newer, lower one stays)."""
        with self.lock, self._db.connection() as conn:
            conn.execute("DELETE FROM meta WHERE key = 'rolled_back_from' AND value = ?", (str(seen),))

    def reset(self) -> None:
        """Forget everything indexed (kept: the deployment binding); the next sync rebuilds.

        The in-place equivalent of deleting the file, safe while other threads read.
        """
        with self.lock:
            self._wipe()

    def _wipe(self, meta: tuple[str, str] | None = None) -> None:
        with self._db.transaction() as conn:
            for table in ("cursor", "blocks", "events", "groups", "members", "member_history", "roots", "tree_snapshots"):
                conn.execute(f"DELETE FROM {table}")
            self._bump_rollbacks(conn)
            if meta is not None:
                self._set_meta(conn, *meta)
            # Whatever the outbox took as mined is checked against the chain again.
            self._set_meta(conn, "rolled_back_from", "0")
            seen = self._bump(conn, everything=True)
        self._trees.clear()
        with self._stats_lock:
            self._unsaved.clear()
        self._pruned_below = 0
        self._serial, self._generations = seen

    # ------------------------------------------------------------------ replicas

    def _read_serial(self, conn: Any) -> int:
        value = self._meta(conn, _SERIAL)
        return 0 if value is None else int(value)

    def _read_generations(self, conn: Any) -> dict[str, int]:
        rows = conn.execute(
            "SELECT key, value FROM meta WHERE key = ? OR key LIKE ?", (_GENERATION, _GENERATION + ":%")
        ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def _bump(self, conn: Any, groups: Iterable[int] = (), *, everything: bool = False) -> tuple[int, dict[str, int]]:
        """Record a change in ``meta`` (inside the writing transaction): ``serial`` always,
        and the generation of ``groups`` (or of the whole index) whose leaves changed other
        than by appending. Returns the values the trees reflect after the commit."""
        generations = self._read_generations(conn)
        keys = [_GENERATION] if everything else [f"{_GENERATION}:{g}" for g in sorted(set(groups))]
        for key in keys:
            generations[key] = generations.get(key, 0) + 1
            self._set_meta(conn, key, str(generations[key]))
        serial = self._read_serial(conn) + 1
        self._set_meta(conn, _SERIAL, str(serial))
        return serial, generations

    def refresh(self) -> bool:
        """Bring the in-memory trees up to what the database holds (a follower replica
        calls this periodically; the leader's own writes keep its trees current).

        One read of ``meta.serial`` when nothing changed; otherwise, per group: leaves
        appended since are inserted (and the tree's root checked against the group's
        current root); a group whose generation moved (a rollback, an update or removal
        of a leaf) or every group after a wipe is reloaded whole. Returns whether
        anything was read. Raises :class:`IndexInconsistency` if a tree cannot be brought
        to the stored root.

        Whole groups are rebuilt without holding ``lock`` (readers keep the previous trees
        meanwhile) and swapped in under it, unless :meth:`apply` moved the trees on in the
        meantime (then its own catch-up stands).
        """
        with self.lock:
            seen = self._serial
        if seen is not None:
            with self._db.connection() as conn:  # the common case: one autocommit read
                if self._read_serial(conn) == seen:
                    return False
        with self._snapshot() as conn:
            return self._catch_up(conn)

    def _catch_up(self, conn: Any) -> bool:
        """:meth:`refresh` on ``conn`` (a snapshot, or :meth:`apply`'s transaction with
        ``lock`` held)."""
        with self.lock:
            seen, known, have = self._serial, dict(self._generations), set(self._trees)
        serial = self._read_serial(conn)
        if seen is not None and serial == seen:
            return False
        generations = self._read_generations(conn)
        ids = [int(r[0]) for r in conn.execute("SELECT group_id FROM groups ORDER BY group_id")]
        full = seen is None or generations.get(_GENERATION) != known.get(_GENERATION)

        def stale(g: int) -> bool:
            key = f"{_GENERATION}:{g}"
            return full or g not in have or generations.get(key) != known.get(key)

        built = {g: self._read_tree(conn, g) for g in ids if stale(g)}  # the slow part
        with self.lock:
            if self._serial != seen:
                return True  # apply caught up (and wrote) meanwhile: its trees are newer
            for g in set(self._trees) - set(ids):
                del self._trees[g]
            self._trees.update(built)
            for g in ids:
                if g not in built:
                    self._extend_tree(conn, g)
            if full:
                self._pruned_below = 0
            self._serial, self._generations = serial, generations
        return True

    def _extend_tree(self, conn: Any, group_id: int) -> None:
        """Insert the leaves appended to a group since its tree was built; reload the
        group if the root then differs from its current root row."""
        tree = self._trees[group_id]
        rows = conn.execute(
            "SELECT idx, commitment, removed FROM members WHERE group_id = ? AND idx >= ? ORDER BY idx",
            (group_id, tree.size),
        ).fetchall()
        if rows:
            start = tree.size
            try:
                tree.insert_many([int(c) for _, c, _ in rows])
                for i, (idx, _, removed) in enumerate(rows):
                    if int(idx) != start + i:
                        raise ValueError("a gap in the leaf indices")
                    if removed:
                        tree.remove(start + i)
            except ValueError:
                self._load_trees(conn, [group_id])
            else:
                self._count_unsaved({group_id: len(rows)})
        if self._trees[group_id].root != self._current_root(conn, group_id):
            self._load_trees(conn, [group_id])
            if self._trees[group_id].root != self._current_root(conn, group_id):
                raise IndexInconsistency(f"group {group_id}: the stored leaves do not give the stored current root")

    def _current_root(self, conn: Any, group_id: int) -> int:
        """The group's current root as stored (0: none, as an empty tree's)."""
        row = conn.execute(
            "SELECT root FROM roots WHERE group_id = ? AND superseded_block IS NULL"
            " ORDER BY created_block DESC, created_log_index DESC LIMIT 1",
            (group_id,),
        ).fetchone()
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ trees

    def _load_trees(self, conn: Any, groups: Iterable[int] | None = None) -> None:
        """(Re)build the trees of ``groups`` (default: every group) from ``members``."""
        wanted = None if groups is None else set(groups)
        ids = [int(r[0]) for r in conn.execute("SELECT group_id FROM groups ORDER BY group_id")]
        if wanted is not None:
            for g in wanted - set(ids):
                self._trees.pop(g, None)
            ids = [g for g in ids if g in wanted]
        else:
            self._trees.clear()
        for g in ids:
            self._trees[g] = self._read_tree(conn, g)

    def _read_tree(self, conn: Any, group_id: int) -> LeanIMT:
        """A group's whole tree (the one place it is read): restored from its snapshot if
        that gives the group's current root, else built from its ``members`` rows."""
        restored = self._restore_tree(conn, group_id)
        if restored is not None:
            return restored
        rows = conn.execute(
            "SELECT commitment, removed FROM members WHERE group_id = ? ORDER BY idx", (group_id,)
        ).fetchall()
        tree = _build_tree([(int(c), bool(r)) for c, r in rows])
        with self._stats_lock:
            self.snapshot_stats["rebuilt"] += 1
            self._unsaved[group_id] = len(rows)
        return tree

    def _restore_tree(self, conn: Any, group_id: int) -> LeanIMT | None:
        """The group's tree from its ``tree_snapshots`` row and the ``members`` rows changed
        after its block (None: no snapshot, or one :func:`tree_snapshot.restore` refuses)."""
        row = conn.execute(
            "SELECT block, size, root, levels FROM tree_snapshots WHERE group_id = ?", (group_id,)
        ).fetchone()
        if row is None:
            return None
        try:
            snapshot = tree_snapshot.TreeSnapshot(int(row[0]), int(row[1]), int(row[2]), bytes(row[3]))
            del row
            changes = [
                (int(i), int(c), bool(r))
                for i, c, r in conn.execute(
                    "SELECT idx, commitment, removed FROM members WHERE group_id = ? AND block_number > ?",
                    (group_id, snapshot.block),
                )
            ]
            tree = tree_snapshot.restore(snapshot, changes, self._current_root(conn, group_id))
        except Exception as exc:  # any fault of the row: rebuild, as without a snapshot
            log.warning("group %d: tree snapshot not used (%s), rebuilding from the member rows", group_id, exc_type(exc))
            with self._stats_lock:
                self.snapshot_stats["rejected"] += 1
            return None
        with self._stats_lock:
            self.snapshot_stats["restored"] += 1
            self._unsaved[group_id] = len(changes)
        return tree

    def _count_unsaved(self, changes: dict[int, int]) -> None:
        with self._stats_lock:
            for g, n in changes.items():
                self._unsaved[g] = self._unsaved.get(g, 0) + n

    def _bump_rollbacks(self, conn: Any) -> None:
        self._set_meta(conn, _ROLLBACKS, str(int(self._meta(conn, _ROLLBACKS) or 0) + 1))

    def _capture_due(self, cursor: int, rollbacks: int) -> list[tuple[int, int, int, tree_snapshot.Capture]]:
        """(group, leaf changes covered, rollbacks seen, capture) of every group due a
        snapshot, its tree as of ``cursor`` (call with ``lock`` held, right after a commit)."""
        with self._stats_lock:
            due = [(g, n) for g, n in self._unsaved.items() if n >= self.snapshot_every and g in self._trees]
        return [(g, n, rollbacks, tree_snapshot.capture(self._trees[g], cursor)) for g, n in due]

    def _save_snapshots(self, captures: Sequence[tuple[int, int, int, tree_snapshot.Capture]]) -> None:
        """Encode (slow: outside ``lock``) and write each captured tree, unless a rollback
        came after the capture; an existing snapshot of a later block is never replaced
        (unless it is above the cursor: none is written there, so it is a damaged row).
        A failure is logged and the snapshot retried after the next :meth:`apply`."""
        for group_id, covered, rollbacks, captured in captures:
            try:
                snap = captured.encode()
                with self._db.transaction() as conn:
                    if int(self._meta(conn, _ROLLBACKS) or 0) != rollbacks:
                        outcome, covered = "skipped", 0  # the rollback's reload recounted them
                    else:
                        written = conn.execute(
                            "INSERT INTO tree_snapshots (group_id, block, size, root, levels) VALUES (?, ?, ?, ?, ?)"
                            " ON CONFLICT (group_id) DO UPDATE SET block = excluded.block, size = excluded.size,"
                            " root = excluded.root, levels = excluded.levels"
                            " WHERE tree_snapshots.block <= excluded.block"
                            " OR tree_snapshots.block > (SELECT block FROM cursor WHERE id = 1)",
                            (group_id, snap.block, snap.size, str(snap.root), snap.levels),
                        ).rowcount
                        outcome = "saved" if written else "skipped"  # else: a newer one covers them
            except Exception as exc:
                log.warning("group %d: tree snapshot not written (%s)", group_id, exc_type(exc))
                continue
            with self._stats_lock:
                self.snapshot_stats[outcome] += 1
                if group_id in self._unsaved:
                    self._unsaved[group_id] = max(0, self._unsaved[group_id] - covered)

    def tree(self, group_id: int) -> LeanIMT:
        """The live tree of a group (do not modify it); KeyError if the group is unknown."""
        with self.lock:
            return self._trees[group_id]

    def has_member(self, group_id: int, commitment: int) -> bool:
        """Whether ``commitment`` is a live leaf of the group (as ``hasMember`` on chain)."""
        with self.lock:
            tree = self._trees.get(group_id)
            return tree is not None and tree.has(commitment)

    # ------------------------------------------------------------------ cursor

    def _cursor_row(self) -> tuple[int, int] | None:
        with self._db.connection() as conn:
            row = conn.execute("SELECT block, head FROM cursor WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    @property
    def cursor(self) -> int | None:
        """The last block whose events are all applied (None: nothing indexed yet)."""
        row = self._cursor_row()
        return None if row is None else row[0]

    @property
    def head(self) -> int | None:
        """The chain head seen at the last sync (for confirmation counts)."""
        row = self._cursor_row()
        return None if row is None else row[1]

    def _now_sql(self) -> str:
        """The database's clock in seconds (PostgreSQL), or a parameter (SQLite: one process)."""
        return "extract(epoch from clock_timestamp())::double precision" if self._db.is_postgres else "?"

    def sync_state(self) -> tuple[int, int, float] | None:
        """(cursor, head seen, seconds since the start of the last complete sync) as the
        leader's indexer recorded them: a follower replica's measure of freshness
        (docs/deployment.md). The age is measured on the database's clock on PostgreSQL,
        so replicas' clocks do not enter it."""
        now = self._now_sql()
        params: tuple[Any, ...] = () if self._db.is_postgres else (time.time(),)
        with self._db.connection() as conn:
            row = conn.execute(
                f"SELECT cursor.block, cursor.head, {now} - CAST(meta.value AS DOUBLE PRECISION) FROM cursor, meta"
                " WHERE cursor.id = 1 AND meta.key = 'synced_at'",
                params,
            ).fetchone()
        if row is None or row[2] is None:
            return None
        return int(row[0]), int(row[1]), max(float(row[2]), 0.0)

    def record_sync(self, head: int, began_ago: float) -> None:
        """The leader's indexer finished a complete sync that began ``began_ago`` seconds
        ago, seeing ``head`` (read by :meth:`sync_state`; the cursor itself moves in apply)."""
        now = self._now_sql()
        stamp: tuple[Any, ...] = () if self._db.is_postgres else (time.time(),)
        with self._db.transaction(serialize=False) as conn:
            conn.execute(
                "UPDATE cursor SET head = CASE WHEN block > ? THEN block ELSE ? END WHERE id = 1", (head, head)
            )
            conn.execute(
                f"INSERT INTO meta (key, value) VALUES ('synced_at', CAST({now} - ? AS TEXT))"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (*stamp, began_ago),
            )

    def block_hash(self, number: int) -> str | None:
        with self._db.connection() as conn:
            row = conn.execute("SELECT hash FROM blocks WHERE number = ?", (number,)).fetchone()
        return None if row is None else str(row[0])

    def stored_blocks(self, below: int, limit: int = 64) -> list[tuple[int, str]]:
        """Stored (number, hash) pairs under ``below``, highest first."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT number, hash FROM blocks WHERE number < ? ORDER BY number DESC LIMIT ?", (below, limit)
            ).fetchall()
        return [(int(n), str(h)) for n, h in rows]

    # ------------------------------------------------------------------ applying

    def apply(
        self,
        events: Sequence[LedgerEvent],
        blocks: Sequence[BlockRef],
        *,
        cursor: int,
        head: int,
        rollback_to: int | None = None,
    ) -> int:
        """In one transaction: roll back above ``rollback_to`` (if given), store ``blocks``,
        apply ``events`` (already applied ones are skipped), move the cursor.

        Every event's block must be in ``blocks`` or already stored, with its timestamp.
        Returns how many events were newly applied. On error nothing changes.

        Then, if the cursor reached ``head`` (not in the middle of a backfill, where each
        snapshot would be outdated a chunk later), for each group with
        :attr:`snapshot_every` leaf changes since its last snapshot, its tree is captured
        under ``lock`` and written as the new snapshot after it (:meth:`_save_snapshots`).
        """
        with self.lock:
            touched: set[int] = set()
            try:
                with self._db.transaction() as conn:
                    # Another replica may have written since this one last looked.
                    self._catch_up(conn)
                    if rollback_to is not None:
                        touched |= self._rollback(conn, rollback_to)
                        self._load_trees(conn, touched)
                        # Remembered in the rollback's own transaction, so that the outbox is
                        # told even if the process dies right after (see rolled_back_from).
                        mark = self._meta(conn, "rolled_back_from")
                        first = rollback_to + 1 if mark is None else min(int(mark), rollback_to + 1)
                        self._set_meta(conn, "rolled_back_from", str(first))
                    self._store_blocks(conn, blocks)
                    fresh = self._record_events(conn, events, touched)
                    self._apply_fresh(conn, fresh)
                    conn.execute(
                        "INSERT INTO cursor (id, block, head, updated_at) VALUES (1, ?, ?, ?)"
                        " ON CONFLICT(id) DO UPDATE SET block = excluded.block, head = excluded.head,"
                        " updated_at = excluded.updated_at",
                        (cursor, max(head, cursor), time.time()),
                    )
                    self._prune(conn, cursor)
                    seen = None
                    if fresh or rollback_to is not None:
                        changed = touched if rollback_to is not None else _leaf_changes(fresh)
                        seen = self._bump(conn, changed)
                    rollbacks = int(self._meta(conn, _ROLLBACKS) or 0)
            except BaseException:
                # The trees of touched groups may hold half-applied changes: reload them.
                if touched:
                    with self._snapshot() as conn:
                        self._load_trees(conn, touched)
                raise
            if seen is not None:
                self._serial, self._generations = seen
            self._count_unsaved(tree_snapshot.leaf_changes(fresh))
            captures = self._capture_due(cursor, rollbacks) if cursor >= head else []
        self._save_snapshots(captures)
        return len(fresh)

    def _store_blocks(self, conn: Any, blocks: Sequence[BlockRef]) -> None:
        """Store (or refresh) ``blocks``; a stored block with events may not change silently."""
        self._timestamps = {b.hash: b.timestamp for b in blocks if b.timestamp is not None}
        for b in blocks:
            row = conn.execute("SELECT hash FROM blocks WHERE number = ?", (b.number,)).fetchone()
            stored = None if row is None else str(row[0])
            if stored is not None and stored != b.hash and self._has_events(conn, stored):
                raise IndexInconsistency(f"block {b.number} changed without a rollback (a reorganisation was missed)")
            conn.execute(
                "INSERT INTO blocks (number, hash, parent_hash, timestamp) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(number) DO UPDATE SET hash = excluded.hash,"
                " parent_hash = coalesce(excluded.parent_hash, CASE WHEN blocks.hash = excluded.hash"
                " THEN blocks.parent_hash END),"
                " timestamp = coalesce(excluded.timestamp, CASE WHEN blocks.hash = excluded.hash"
                " THEN blocks.timestamp END)",
                (b.number, b.hash, b.parent_hash, b.timestamp),
            )

    def _apply_fresh(self, conn: Any, fresh: Sequence[LedgerEvent]) -> None:
        """Apply newly recorded events in order, consecutive additions to one group as one run."""
        run: list[LedgerEvent] = []
        for ev in fresh:
            if ev.name in _ADD_EVENTS:
                if run and run[0].args["groupId"] != ev.args["groupId"]:
                    self._apply_additions(conn, run)
                    run = []
                run.append(ev)
                continue
            if run:
                self._apply_additions(conn, run)
                run = []
            self._apply_event(conn, ev)
        if run:
            self._apply_additions(conn, run)

    def _has_events(self, conn: Any, block_hash: str) -> bool:
        row = conn.execute("SELECT 1 FROM events WHERE block_hash = ? LIMIT 1", (block_hash,)).fetchone()
        return row is not None

    def _timestamp(self, conn: Any, block_hash: str) -> int:
        known = self._timestamps.get(block_hash)
        if known is not None:
            return known
        row = conn.execute("SELECT timestamp FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        if row is None or row[0] is None:
            raise ValueError(f"no timestamp for block {block_hash}")
        return int(row[0])

    def _record_events(self, conn: Any, events: Sequence[LedgerEvent], touched: set[int]) -> list[LedgerEvent]:
        """Store the event rows not stored yet; return those, in chain order (a log applied
        before is skipped: idempotence keyed by block hash and log index)."""
        ordered = sorted(events, key=lambda e: (e.block_number, e.log_index))
        if not ordered:
            return []
        seen = {
            (str(h), int(i))
            for h, i in conn.execute(
                "SELECT block_hash, log_index FROM events WHERE block_number BETWEEN ? AND ?",
                (ordered[0].block_number, ordered[-1].block_number),
            )
        }
        fresh = []
        for ev in ordered:
            key = (ev.block_hash, ev.log_index)
            if key in seen:
                continue
            seen.add(key)
            fresh.append(ev)
        rows = []
        for ev in fresh:
            group = ev.args.get("groupId")
            group_id = None if group is None else int(group)
            if group_id is not None:
                touched.add(group_id)
            rows.append(
                (
                    ev.block_hash,
                    ev.log_index,
                    ev.block_number,
                    ev.tx_hash,
                    ev.name,
                    group_id,
                    json.dumps(_jsonable(ev.args), separators=(",", ":")),
                )
            )
        conn.executemany(
            "INSERT INTO events (block_hash, log_index, block_number, tx_hash, name, group_id, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return fresh

    def _apply_event(self, conn: Any, ev: LedgerEvent) -> None:
        """Derived state of one recorded event other than an addition."""
        group = ev.args.get("groupId")
        if group is None:
            return
        group_id = int(group)
        args = ev.args
        name = ev.name
        if name == "GroupCreated":
            conn.execute(
                "INSERT INTO groups (group_id, admin, root_window, created_block, created_tx, pending_admin)"
                " VALUES (?, ?, ?, ?, ?, NULL)",
                (group_id, str(args["admin"]), int(args["rootWindow"]), ev.block_number, ev.tx_hash),
            )
            self._trees[group_id] = LeanIMT(unique=False)
        elif name == "GroupAdminTransferStarted":
            conn.execute(
                "UPDATE groups SET pending_admin = ? WHERE group_id = ?", (str(args["pendingAdmin"]), group_id)
            )
        elif name == "GroupAdminTransferred":
            conn.execute(
                "UPDATE groups SET admin = ?, pending_admin = NULL WHERE group_id = ?",
                (str(args["newAdmin"]), group_id),
            )
        elif name == "RootWindowChanged":
            conn.execute(
                "UPDATE groups SET root_window = ? WHERE group_id = ?", (int(args["newWindow"]), group_id)
            )
        elif name in ("MemberUpdated", "MemberRemoved"):
            self._apply_leaf_change(conn, ev, group_id)

    def _group_tree(self, ev: LedgerEvent, group_id: int) -> LeanIMT:
        tree = self._trees.get(group_id)
        if tree is None:
            raise IndexInconsistency(f"{ev.name} for group {group_id}, which was never created")
        return tree

    def _apply_additions(self, conn: Any, run: Sequence[LedgerEvent]) -> None:
        """Consecutive MemberAdded/MembersAdded events of one group, inserted as one batch.

        Each inner node is hashed once for the whole run (a one-leaf event would otherwise
        rehash its whole path); the tree's root must equal the last event's ``newRoot``,
        which pins every leaf, and each event's own ``newRoot`` becomes a root row.
        """
        group_id = int(run[0].args["groupId"])
        tree = self._group_tree(run[0], group_id)
        rows = []
        leaves: list[int] = []
        position = tree.size
        for ev in run:
            values = (
                [int(ev.args["commitment"])] if ev.name == "MemberAdded" else [int(c) for c in ev.args["commitments"]]
            )
            for c in values:
                rows.append((group_id, position, str(c), ev.block_number, ev.tx_hash))
                position += 1
            leaves.extend(values)
        try:
            tree.insert_many(leaves)
        except ValueError as exc:
            raise IndexInconsistency(f"group {group_id}: leaves the tree refuses ({exc})") from None
        if tree.root != int(run[-1].args["newRoot"]):
            raise IndexInconsistency(
                f"group {group_id}: the tree's root after the additions up to block {run[-1].block_number} "
                "differs from the event's newRoot"
            )
        conn.executemany(
            "INSERT INTO members (group_id, idx, commitment, block_number, tx_hash, removed) VALUES (?, ?, ?, ?, ?, 0)",
            rows,
        )
        # Each event's root is superseded by the next one's block; the last stays current.
        times = [self._timestamp(conn, ev.block_hash) for ev in run]
        self._supersede(conn, group_id, run[0].block_number, times[0])
        conn.executemany(
            "INSERT INTO roots (group_id, root, created_block, created_log_index, created_time,"
            " superseded_block, superseded_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    group_id,
                    str(int(ev.args["newRoot"])),
                    ev.block_number,
                    ev.log_index,
                    times[i],
                    run[i + 1].block_number if i + 1 < len(run) else None,
                    times[i + 1] if i + 1 < len(run) else None,
                )
                for i, ev in enumerate(run)
            ],
        )

    def _apply_leaf_change(self, conn: Any, ev: LedgerEvent, group_id: int) -> None:
        tree = self._group_tree(ev, group_id)
        args = ev.args
        index = int(args["index"])
        row = conn.execute(
            "SELECT commitment, block_number, tx_hash, removed FROM members WHERE group_id = ? AND idx = ?",
            (group_id, index),
        ).fetchone()
        if row is None:
            raise IndexInconsistency(f"{ev.name} of unknown leaf {index} in group {group_id}")
        conn.execute(
            "INSERT INTO member_history (block_number, log_index, group_id, idx, old_commitment,"
            " old_block_number, old_tx_hash, old_removed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ev.block_number, ev.log_index, group_id, index, row[0], row[1], row[2], row[3]),
        )
        try:
            if ev.name == "MemberUpdated":
                new = int(args["newCommitment"])
                tree.update(index, new)
                conn.execute(
                    "UPDATE members SET commitment = ?, block_number = ?, tx_hash = ?, removed = 0"
                    " WHERE group_id = ? AND idx = ?",
                    (str(new), ev.block_number, ev.tx_hash, group_id, index),
                )
            else:
                tree.remove(index)
                conn.execute(
                    "UPDATE members SET removed = 1, block_number = ?, tx_hash = ? WHERE group_id = ? AND idx = ?",
                    (ev.block_number, ev.tx_hash, group_id, index),
                )
        except ValueError as exc:
            raise IndexInconsistency(f"group {group_id}: {ev.name} the tree refuses ({exc})") from None
        new_root = int(args["newRoot"])
        if tree.root != new_root:
            raise IndexInconsistency(
                f"group {group_id}: the tree's root after {ev.name} at block {ev.block_number} "
                "differs from the event's newRoot"
            )
        self._new_root(conn, ev, group_id, new_root)

    def _new_root(self, conn: Any, ev: LedgerEvent, group_id: int, new_root: int) -> None:
        """The group's current root becomes ``new_root`` at ``ev``'s block: the contract stamps
        the replaced root with the block time (root 0 is never recorded)."""
        timestamp = self._timestamp(conn, ev.block_hash)
        self._supersede(conn, group_id, ev.block_number, timestamp)
        if new_root != 0:
            conn.execute(
                "INSERT INTO roots (group_id, root, created_block, created_log_index, created_time)"
                " VALUES (?, ?, ?, ?, ?)",
                (group_id, str(new_root), ev.block_number, ev.log_index, timestamp),
            )

    def _supersede(self, conn: Any, group_id: int, block_number: int, timestamp: int) -> None:
        conn.execute(
            "UPDATE roots SET superseded_block = ?, superseded_time = ? WHERE group_id = ? AND superseded_block IS NULL",
            (block_number, timestamp, group_id),
        )

    def _rollback(self, conn: Any, ancestor: int) -> set[int]:
        """Undo everything above block ``ancestor``; return the groups whose state changed."""
        touched = {
            int(g)
            for (g,) in conn.execute(
                "SELECT DISTINCT group_id FROM events WHERE block_number > ? AND group_id IS NOT NULL", (ancestor,)
            )
        }
        history = conn.execute(
            "SELECT group_id, idx, old_commitment, old_block_number, old_tx_hash, old_removed FROM member_history"
            " WHERE block_number > ? ORDER BY block_number DESC, log_index DESC",
            (ancestor,),
        ).fetchall()
        for g, idx, commitment, block, tx, removed in history:
            conn.execute(
                "UPDATE members SET commitment = ?, block_number = ?, tx_hash = ?, removed = ?"
                " WHERE group_id = ? AND idx = ?",
                (commitment, block, tx, removed, g, idx),
            )
        conn.execute("DELETE FROM member_history WHERE block_number > ?", (ancestor,))
        conn.execute("DELETE FROM members WHERE block_number > ?", (ancestor,))
        conn.execute("DELETE FROM roots WHERE created_block > ?", (ancestor,))
        conn.execute(
            "UPDATE roots SET superseded_block = NULL, superseded_time = NULL WHERE superseded_block > ?", (ancestor,)
        )
        conn.execute("DELETE FROM groups WHERE created_block > ?", (ancestor,))
        # Restored member rows keep their older block numbers, which a snapshot's replay
        # would not see: the snapshots taken above the ancestor go with it.
        conn.execute("DELETE FROM tree_snapshots WHERE block > ?", (ancestor,))
        self._bump_rollbacks(conn)
        conn.execute("DELETE FROM events WHERE block_number > ?", (ancestor,))
        conn.execute("DELETE FROM blocks WHERE number > ?", (ancestor,))
        for g in touched:
            self._recompute_group(conn, g)
        return touched

    def _recompute_group(self, conn: Any, group_id: int) -> None:
        """Admin, pending admin and window of a group from its remaining events."""
        rows = conn.execute(
            "SELECT name, data FROM events WHERE group_id = ? AND name IN ('GroupCreated',"
            " 'GroupAdminTransferStarted', 'GroupAdminTransferred', 'RootWindowChanged')"
            " ORDER BY block_number, log_index",
            (group_id,),
        ).fetchall()
        if not rows:
            return
        admin: str | None = None
        pending: str | None = None
        window = 0
        for name, data in rows:
            args = json.loads(data)
            if name == "GroupCreated":
                admin, window = args["admin"], int(args["rootWindow"])
            elif name == "GroupAdminTransferStarted":
                pending = args["pendingAdmin"]
            elif name == "GroupAdminTransferred":
                admin, pending = args["newAdmin"], None
            elif name == "RootWindowChanged":
                window = int(args["newWindow"])
        conn.execute(
            "UPDATE groups SET admin = ?, pending_admin = ?, root_window = ? WHERE group_id = ?",
            (admin, pending, window, group_id),
        )

    def _prune(self, conn: Any, cursor: int) -> None:
        """Forget old blocks without events (the cursor and recent blocks stay)."""
        limit = cursor - KEEP_RECENT_BLOCKS
        if limit <= self._pruned_below:
            return
        conn.execute(
            "DELETE FROM blocks WHERE number >= ? AND number < ?"
            " AND NOT EXISTS (SELECT 1 FROM events WHERE events.block_hash = blocks.hash)",
            (self._pruned_below, limit),
        )
        self._pruned_below = limit

    # ------------------------------------------------------------------ queries

    def group(self, group_id: int) -> GroupRecord | None:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT group_id, admin, root_window, created_block, created_tx, pending_admin FROM groups"
                " WHERE group_id = ?",
                (group_id,),
            ).fetchone()
        return None if row is None else GroupRecord(int(row[0]), row[1], int(row[2]), int(row[3]), row[4], row[5])

    def groups(self) -> list[GroupRecord]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT group_id, admin, root_window, created_block, created_tx, pending_admin FROM groups"
                " ORDER BY group_id"
            ).fetchall()
        return [GroupRecord(int(r[0]), r[1], int(r[2]), int(r[3]), r[4], r[5]) for r in rows]

    def member(self, group_id: int, commitment: int) -> MemberRecord | None:
        """The live leaf holding ``commitment`` (None if absent or removed)."""
        return self._leaf(group_id, commitment, " AND removed = 0 ORDER BY idx LIMIT 1")

    def last_leaf_of(self, group_id: int, commitment: int) -> MemberRecord | None:
        """The most recently changed leaf that holds or held ``commitment`` (removed included)."""
        return self._leaf(group_id, commitment, " ORDER BY block_number DESC, idx DESC LIMIT 1")

    def _leaf(self, group_id: int, commitment: int, rest: str) -> MemberRecord | None:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT idx, block_number, tx_hash, removed FROM members WHERE group_id = ? AND commitment = ?" + rest,
                (group_id, str(commitment)),
            ).fetchone()
        if row is None:
            return None
        return MemberRecord(group_id, int(row[0]), commitment, int(row[1]), _text_or_none(row[2]), bool(row[3]))

    def members(self, group_id: int) -> list[MemberRecord]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT idx, commitment, block_number, tx_hash, removed FROM members WHERE group_id = ? ORDER BY idx",
                (group_id,),
            ).fetchall()
        return [MemberRecord(group_id, int(i), int(c), int(b), _text_or_none(t), bool(r)) for i, c, b, t, r in rows]

    def batches(self, limit: int) -> list[tuple[str, int, int, int]]:
        """The newest ``limit`` transactions that added members: (tx hash, group id,
        block, members added), newest block first (the explorer's batch list)."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT tx_hash, group_id, MIN(block_number), COUNT(*) FROM members WHERE tx_hash IS NOT NULL"
                " GROUP BY tx_hash, group_id ORDER BY MIN(block_number) DESC, tx_hash DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(str(t), int(g), int(b), int(n)) for t, g, b, n in rows]

    def roots(self, group_id: int) -> list[RootRecord]:
        """Every time a root became current, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT root, created_block, created_time, superseded_block, superseded_time FROM roots"
                " WHERE group_id = ? ORDER BY created_block, created_log_index",
                (group_id,),
            ).fetchall()
        return [
            RootRecord(group_id, int(r), int(cb), int(ct), None if sb is None else int(sb), None if st is None else int(st))
            for r, cb, ct, sb, st in rows
        ]

    def tx_block(self, tx_hash: str) -> int | None:
        """Block of an indexed transaction of the registry (None if none of its events is indexed)."""
        with self._db.connection() as conn:
            row = conn.execute("SELECT min(block_number) FROM events WHERE tx_hash = ?", (tx_hash,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def event_count(self) -> int:
        with self._db.connection() as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def _latest_root(self, root: int, group_id: int | None) -> tuple[Any, ...] | None:
        sql = (
            "SELECT r.group_id, r.created_block, r.created_time, r.superseded_block, r.superseded_time, g.root_window"
            " FROM roots r JOIN groups g ON g.group_id = r.group_id WHERE r.root = ?"
        )
        params: list[Any] = [str(root)]
        if group_id is not None:
            sql += " AND r.group_id = ?"
            params.append(group_id)
        with self._db.connection() as conn:
            row = conn.execute(sql + " ORDER BY r.created_block DESC, r.created_log_index DESC LIMIT 1", params).fetchone()
        return None if row is None else tuple(row)

    def root_status(self, group_id: int, root: int, now: float) -> RootStatus:
        """:class:`registry.service.authorization.RootOracle`: the contract's rule at time ``now``."""
        if isinstance(root, bool) or not isinstance(root, int) or root <= 0:
            return RootStatus.UNKNOWN
        row = self._latest_root(root, group_id)
        if row is None:
            return RootStatus.UNKNOWN
        superseded_time, window = row[4], int(row[5])
        if superseded_time is None or now - int(superseded_time) <= window:
            return RootStatus.VALID
        return RootStatus.EXPIRED

    def root_info(self, root: int, now: float | None = None) -> dict[str, Any] | None:
        """Where and when ``root`` was a root (its latest occurrence); None if never."""
        if isinstance(root, bool) or not isinstance(root, int) or root <= 0:
            return None
        row = self._latest_root(root, None)
        if row is None:
            return None
        group_id, created_block, created_time, superseded_block, superseded_time, window = row
        t = time.time() if now is None else now
        current = superseded_time is None
        valid_until = None if current else int(superseded_time) + int(window)
        return {
            "root": str(root),
            "group_id": int(group_id),
            "valid": current or t <= int(valid_until or 0),
            "current": current,
            "created_block": int(created_block),
            "created_at": int(created_time),
            "superseded_block": None if superseded_block is None else int(superseded_block),
            "superseded_at": None if superseded_time is None else int(superseded_time),
            "valid_until": valid_until,
        }
