"""How every store in ``registry`` opens SQLite: WAL mode, and fsync per commit where a
client was told "accepted" (outbox, nullifiers, evidence, blobs) but not where the data
can be rebuilt (the chain index) or is only a log (connection times).

Also how they close and how a service checks them at start (docs/operations.md):

- :func:`close_connection` folds the WAL into the main file (``wal_checkpoint(TRUNCATE)``)
  before closing, so after a clean stop the main file alone holds every commit;
- :class:`StoreManifest` (``<data_dir>/stores.json``) lists the durable stores created in a
  data directory; :meth:`StoreManifest.check` refuses one that should exist but is missing,
  empty, not SQLite, fails ``PRAGMA quick_check`` or lacks its tables (:class:`StoreError`)
  instead of letting SQLite create an empty one: an empty nullifier store would authorize
  spent proofs again;
- every durable store carries its data directory's random id (table ``store_identity``,
  written by :meth:`StoreManifest.record`, also kept in ``stores.json``):
  :meth:`StoreManifest.check` refuses a store listed in the manifest that lacks the id or
  has another one, i.e. a fresh file with the right schema (or another directory's store)
  put in place of the lost one, which would pass every other check and forget every
  claimed nullifier.

Transactions and schemas, one way each:

- every multi-statement write runs in :func:`transaction` (``BEGIN IMMEDIATE``, ``COMMIT``,
  ``ROLLBACK`` on any exception, including a failed ``COMMIT``): no store writes its own
  ``BEGIN``/``COMMIT``/``ROLLBACK``;
- every schema is plain SQL DDL (``CREATE TABLE/INDEX IF NOT EXISTS``) applied by
  :func:`create_schema` in one transaction. The durable stores need constraints
  sqlite-utils' ``Table.create`` cannot state (``CHECK``, partial unique indexes,
  ``AUTOINCREMENT``, ``WITHOUT ROWID``), so DDL is the one way that serves them all;
  sqlite-utils is not used for schemas (nor for queries: parameterised SQL on
  :mod:`sqlite3` is what every store reads best), so it is not a dependency.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from zk import strict_json

log = logging.getLogger("registry.storage.sqlite")

#: The data directory's list of durable stores (see :class:`StoreManifest`).
MANIFEST_FILE = "stores.json"
#: The fix for a lost or damaged durable store.
RESTORE_FIX = "restore it from a backup (docs/operations.md) before starting"
_MAGIC = b"SQLite format 3\x00"
#: The table holding a store's data directory id (one row).
ID_TABLE = "store_identity"
_ID = re.compile(r"[0-9a-f]{32}")


def connect(path: Path | str, *, durable: bool, timeout: float = 30.0) -> sqlite3.Connection:
    """An autocommit connection usable from any thread (callers serialise their own use).

    ``durable``: ``synchronous=FULL``, so a committed write survives a power cut before
    it is acknowledged; otherwise ``NORMAL`` (safe against corruption, may lose the last
    commits on power loss).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """Run the ``with`` block in one transaction on an autocommit connection (:func:`connect`).

    ``BEGIN IMMEDIATE`` (takes the write lock at once, so two writers never deadlock on an
    upgrade) or, with ``immediate=False``, a deferred ``BEGIN``; ``COMMIT`` when the block
    ends; ``ROLLBACK`` and re-raise if the block or the ``COMMIT`` raises (nothing of it is
    kept). Callers serialise their own use of ``conn`` (one connection, one transaction).
    """
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
            conn.execute("ROLLBACK")
        raise


def create_schema(conn: sqlite3.Connection, statements: Iterable[str]) -> None:
    """Apply a store's DDL (``CREATE ... IF NOT EXISTS`` statements) in one transaction."""
    with transaction(conn):
        for statement in statements:
            conn.execute(statement)


class ConnectionPerThread:
    """One connection per thread (SQLite connections must not be used concurrently),
    all of them closed together by :meth:`close`."""

    def __init__(self, path: Path | str, *, durable: bool, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._durable = durable
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, durable=self._durable, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection; the last one checkpoints the WAL into the main file
        first (the others are closed before, so no reader holds the WAL)."""
        with self._lock:
            last = self._all.pop() if self._all else None
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
            if last is not None:
                close_connection(last)
        self._local = threading.local()


def close_connection(conn: sqlite3.Connection) -> None:
    """Checkpoint the WAL into the main file, truncate it, then close.

    After this (and once no other connection has the file open, when SQLite also deletes
    the ``-wal`` and ``-shm`` files) the main file alone holds every commit: a copy of it is
    a complete backup. A checkpoint blocked by another reader is logged, not raised: the
    commits are still safe in the WAL.
    """
    try:
        row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if row is not None and row[0]:
            log.warning("WAL checkpoint incomplete at close (another connection is reading)")
    except sqlite3.Error as exc:
        log.warning("WAL checkpoint failed at close: %s", type(exc).__name__)
    finally:
        try:
            conn.close()
        except sqlite3.Error:
            pass


class StoreError(ValueError):
    """A store that should exist is missing, empty or corrupt. The message is one line:
    the file, what is wrong with it, and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        super().__init__(f"{path} {problem}: {fix}")
        self.path = Path(path)
        self.problem = problem
        self.fix = fix


def check_store(path: Path | str, tables: Iterable[str], fix: str = RESTORE_FIX) -> None:
    """Raise :class:`StoreError` unless ``path`` is a non-empty SQLite database that passes
    ``PRAGMA quick_check`` and has every table in ``tables``.

    Opening it replays a ``-wal`` left by a crash, as the store itself would."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as handle:
            header = handle.read(len(_MAGIC))
    except FileNotFoundError:
        raise StoreError(p, "is missing", fix) from None
    except OSError as exc:
        raise StoreError(p, f"cannot be read ({exc.strerror or type(exc).__name__})", fix) from None
    if size == 0:
        raise StoreError(p, "is empty (0 bytes)", fix)
    if header != _MAGIC:
        raise StoreError(p, "is not an SQLite database", fix)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
        result = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(p, f"is corrupt ({type(exc).__name__})", fix) from None
    finally:
        if conn is not None:
            conn.close()
    if result != ["ok"]:
        raise StoreError(p, "is corrupt (PRAGMA quick_check failed)", fix)
    missing = sorted(set(tables) - names)
    if missing:
        raise StoreError(p, f"lacks its table(s) {', '.join(missing)} (a copy without its -wal?)", fix)


class StoreManifest:
    """``<data_dir>/stores.json``: the durable stores created in a data directory.

    This is how a service knows that a store *should* exist: a name is written here once
    its file was created with its schema, and from then on the file must exist and be
    valid (:meth:`check`). Without a manifest (a data directory from before it existed, or
    one whose manifest was lost) every store that exists is checked, and with ``together``
    a store counts as expected as soon as any of its set exists (stores always created
    together). A fresh data directory has neither: everything is created.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / MANIFEST_FILE
        self.names: set[str] = set()
        #: The data directory's id (``None`` until known: a new directory, or one from
        #: before ids, or whose manifest was lost and whose stores carry none).
        self.id: str | None = None
        #: The stores known to carry :attr:`id` (they must still carry it).
        self.stamped: set[str] = set()
        self.exists = self.path.exists()
        if self.exists:
            fix = f"restore it from a backup, or write it listing the stores of {self.data_dir} (docs/operations.md)"
            try:
                data = strict_json.loads(self.path.read_bytes())
            except (OSError, ValueError):  # JsonInputError is a ValueError
                raise StoreError(self.path, "is unreadable", fix) from None
            stores = data.get("stores") if isinstance(data, dict) else None
            if not isinstance(stores, list) or not all(isinstance(n, str) for n in stores):
                raise StoreError(self.path, 'is not {"stores": [file names]}', fix)
            ident = data.get("id")
            if ident is not None and not (isinstance(ident, str) and _ID.fullmatch(ident)):
                raise StoreError(self.path, "has an id that is not 32 lowercase hex digits", fix)
            stamped = data.get("stamped", [])
            if not isinstance(stamped, list) or not all(isinstance(n, str) for n in stamped) or (stamped and ident is None):
                raise StoreError(self.path, 'has a "stamped" entry that is not a list of file names with an id', fix)
            self.names = set(stores)
            self.id = ident
            self.stamped = set(stamped)
        self._recorded_id = self.id

    def check(self, stores: Mapping[str, Iterable[str]], *, together: bool = False, fix: str = RESTORE_FIX) -> None:
        """Check each store (file name -> its tables) that should exist or does exist."""
        present = {name for name in stores if (self.data_dir / name).exists()}
        expected = (self.names & set(stores)) | present
        if together and not self.exists and present:
            expected = set(stores)
        for name in sorted(stores):
            if name in expected:
                check_store(self.data_dir / name, stores[name], fix)
        # Identity: a store that passed the checks above may still be a fresh file with the
        # right schema (or another directory's store) put in place of the lost one.
        found = {name: store_id(self.data_dir / name) for name in sorted(expected)}
        if self.id is None:  # no id recorded: the stores' own id, if they agree on one
            ids = sorted({i for i in found.values() if i is not None})
            if len(ids) > 1:
                odd = next(n for n, i in found.items() if i == ids[1])
                raise StoreError(self.data_dir / odd, "belongs to another data directory (its store id differs from its neighbours')", fix)
            self.id = ids[0] if ids else None
        if self.id is None:
            return
        for name, ident in found.items():
            # Stamped stores must carry the id; without a manifest (lost: record() writes it
            # before any stamp) every store must carry the id its neighbours carry.
            required = name in self.stamped or not self.exists
            if ident is None and required:
                raise StoreError(
                    self.data_dir / name,
                    "is not the store this data directory had (it lacks the directory's store id: a new file in place of a lost one?)",
                    fix,
                )
            if ident is not None and ident != self.id:
                raise StoreError(self.data_dir / name, "belongs to another data directory (its store id differs from stores.json)", fix)

    def record(self, names: Iterable[str]) -> None:
        """Add ``names`` (stores just opened, so their files and schemas exist), durably,
        and stamp each SQLite store among them with the data directory's id.

        Order: the manifest with the id first, then the stamps, then the manifest listing
        the stamped stores; a crash anywhere in between never leaves a store that must
        carry the id without it."""
        names = set(names)
        new = self.names | names
        if self.id is None:
            self.id = secrets.token_hex(16)
        if self._recorded_id != self.id or not self.exists:
            self._write(self.names, self.stamped)
        stamped = set(self.stamped)
        for name in sorted(names):
            path = self.data_dir / name
            if path.is_file():
                stamp_store(path, self.id)
                stamped.add(name)
        if new != self.names or stamped != self.stamped:
            self._write(new, stamped)

    def _write(self, names: set[str], stamped: set[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        body = json.dumps({"version": 2, "stores": sorted(names), "id": self.id, "stamped": sorted(stamped)}, indent=2) + "\n"
        with tmp.open("w") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.names = set(names)
        self.stamped = set(stamped)
        self.exists = True
        self._recorded_id = self.id


def store_id(path: Path | str) -> str | None:
    """The data directory id ``path`` carries, or ``None`` (no id table, or no row)."""
    p = Path(path)
    if not p.is_file():
        return None
    conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (ID_TABLE,)).fetchone() is None:
            return None
        row = conn.execute(f"SELECT id FROM {ID_TABLE} LIMIT 1").fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def stamp_store(path: Path | str, ident: str) -> None:
    """Write ``ident`` into the store at ``path`` unless it already carries an id (durably)."""
    conn = connect(path, durable=True)
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {ID_TABLE} (id TEXT NOT NULL)")
        conn.execute(f"INSERT INTO {ID_TABLE} (id) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM {ID_TABLE})", (ident,))
    finally:
        conn.close()
