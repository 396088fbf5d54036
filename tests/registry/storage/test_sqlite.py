"""registry/storage/sqlite.py: stores are checkpointed when they close, and a store that should
exist but is missing, empty or corrupt is refused (one line: the file and the fix)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from registry.service.authorization import SqliteNullifierStore
from registry.storage.sqlite import (
    MANIFEST_FILE,
    ConnectionPerThread,
    StoreError,
    StoreManifest,
    check_store,
    connect,
    create_schema,
    transaction,
)

TABLES = {"a.sqlite": ("things",), "b.sqlite": ("others",)}


def _make(path: Path, table: str, rows: int = 3) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (x INTEGER)")
    conn.executemany(f"INSERT INTO {table} VALUES (?)", [(i,) for i in range(rows)])
    conn.commit()
    conn.close()


def _message(exc: pytest.ExceptionInfo[StoreError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_close_checkpoints_every_thread_connection_into_the_main_file(tmp_path: Path) -> None:
    path = tmp_path / "nullifiers.sqlite"
    store = SqliteNullifierStore(path)
    # Claims from several threads: one connection each, all in WAL mode.
    threads = [threading.Thread(target=store.claim, args=(0, 1000 + i, 7)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.claim(0, 1, 7)
    assert Path(f"{path}-wal").exists()
    store.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    # The main file alone (a plain file copy) holds every claim.
    copy = tmp_path / "copy" / "nullifiers.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy)
    assert db.execute("SELECT count(*) FROM nullifiers").fetchone()[0] == 5
    db.close()


def test_close_with_no_connection_and_twice(tmp_path: Path) -> None:
    pool = ConnectionPerThread(tmp_path / "x.sqlite", durable=True)
    pool.close()
    pool.get().execute("CREATE TABLE t (x)")
    pool.close()
    pool.close()
    assert not (tmp_path / "x.sqlite-wal").exists()


def test_check_store_accepts_a_valid_store(tmp_path: Path) -> None:
    _make(tmp_path / "a.sqlite", "things")
    check_store(tmp_path / "a.sqlite", ("things",))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("delete", "is missing"),
        ("truncate", "is empty (0 bytes)"),
        ("garbage", "is not an SQLite database"),
        ("pages", "is corrupt"),
        ("schema", "lacks its table(s) things"),
    ],
)
def test_check_store_refuses_a_damaged_store_in_one_line(tmp_path: Path, damage: str, problem: str) -> None:
    path = tmp_path / "a.sqlite"
    _make(path, "things", rows=2000)
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"not a database at all " * 500)
    elif damage == "pages":
        data = bytearray(path.read_bytes())
        data[100:] = b"\xa5" * (len(data) - 100)  # header intact, every page broken
        path.write_bytes(bytes(data))
    else:
        path.unlink()
        _make(path, "unrelated")
    with pytest.raises(StoreError) as exc:
        check_store(path, ("things",), "do the fix")
    text = _message(exc)
    assert text.startswith(str(path)) and problem in text and text.endswith(": do the fix")


def test_fresh_directory_creates_everything_and_records_it(tmp_path: Path) -> None:
    manifest = StoreManifest(tmp_path)
    assert not manifest.exists
    manifest.check(TABLES, together=True)  # nothing to check yet
    _make(tmp_path / "a.sqlite", "things")
    _make(tmp_path / "b.sqlite", "others")
    manifest.record(TABLES)
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["stores"] == ["a.sqlite", "b.sqlite"]
    again = StoreManifest(tmp_path)
    again.check(TABLES, together=True)
    assert again.names == {"a.sqlite", "b.sqlite"}


def test_a_recorded_store_must_exist(tmp_path: Path) -> None:
    _make(tmp_path / "a.sqlite", "things")
    _make(tmp_path / "b.sqlite", "others")
    StoreManifest(tmp_path).record(TABLES)
    (tmp_path / "b.sqlite").unlink()
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path).check(TABLES)
    assert "b.sqlite is missing" in _message(exc) and "backup" in _message(exc)
    # A store this run does not open is not checked (a relay in another mode).
    StoreManifest(tmp_path).check({"a.sqlite": ("things",)})


def test_without_a_manifest_existing_stores_are_checked(tmp_path: Path) -> None:
    (tmp_path / "a.sqlite").write_bytes(b"")
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path).check(TABLES)
    assert "a.sqlite is empty" in _message(exc)


def test_without_a_manifest_stores_created_together_are_expected_together(tmp_path: Path) -> None:
    _make(tmp_path / "a.sqlite", "things")
    StoreManifest(tmp_path).check(TABLES)  # b.sqlite may be new (not created together)
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path).check(TABLES, together=True)
    assert "b.sqlite is missing" in _message(exc)


@pytest.mark.parametrize("content", ["not json", '{"stores": "a.sqlite"}', "[]"])
def test_an_unreadable_manifest_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(content)
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path)
    assert MANIFEST_FILE in _message(exc)


def _fresh_in_place(path: Path, table: str) -> None:
    """What an operator (or an attacker) puts in place of a lost store: a new file with the
    right schema and nothing else."""
    path.unlink()
    _make(path, table, rows=0)


def test_a_fresh_store_with_the_right_schema_in_place_of_a_recorded_one_is_refused(tmp_path: Path) -> None:
    _make(tmp_path / "a.sqlite", "things")
    _make(tmp_path / "b.sqlite", "others")
    StoreManifest(tmp_path).record(TABLES)
    recorded = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert len(recorded["id"]) == 32 and recorded["stamped"] == ["a.sqlite", "b.sqlite"]
    StoreManifest(tmp_path).check(TABLES, together=True)  # the stores it had: accepted
    _fresh_in_place(tmp_path / "b.sqlite", "others")
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path).check(TABLES, together=True)
    assert "b.sqlite is not the store this data directory had" in _message(exc)
    # Also when stores.json is gone: its neighbour still carries the directory's id.
    (tmp_path / MANIFEST_FILE).unlink()
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path).check(TABLES)
    assert "b.sqlite is not the store this data directory had" in _message(exc)


def test_a_store_of_another_data_directory_is_refused(tmp_path: Path) -> None:
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        _make(tmp_path / d / "a.sqlite", "things")
        _make(tmp_path / d / "b.sqlite", "others")
        StoreManifest(tmp_path / d).record(TABLES)
    shutil.copyfile(tmp_path / "two" / "b.sqlite", tmp_path / "one" / "b.sqlite")
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path / "one").check(TABLES)
    assert "b.sqlite belongs to another data directory" in _message(exc)


def test_stores_from_before_ids_are_adopted_and_stamped(tmp_path: Path) -> None:
    _make(tmp_path / "a.sqlite", "things")
    _make(tmp_path / "b.sqlite", "others")
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"version": 1, "stores": ["a.sqlite", "b.sqlite"]}))
    manifest = StoreManifest(tmp_path)
    manifest.check(TABLES, together=True)  # no id anywhere yet: nothing to compare
    manifest.record(TABLES)
    again = StoreManifest(tmp_path)
    assert again.id == manifest.id and again.stamped == {"a.sqlite", "b.sqlite"}
    again.check(TABLES, together=True)
    # A store added later (not stamped yet) is accepted until it is recorded.
    _make(tmp_path / "c.sqlite", "more")
    again.check({**TABLES, "c.sqlite": ("more",)})


@pytest.mark.parametrize("content", ['{"stores": [], "stores": []}', "[" * 100_000 + "]" * 100_000, '{"stores": [], "id": "xyz"}'])
def test_a_manifest_that_is_not_strict_json_is_refused_in_one_line(tmp_path: Path, content: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(content)
    with pytest.raises(StoreError) as exc:
        StoreManifest(tmp_path)
    assert MANIFEST_FILE in _message(exc)


def test_transaction_commits_the_block_or_nothing(tmp_path: Path) -> None:
    conn = connect(tmp_path / "t.sqlite", durable=True)
    create_schema(conn, ["CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)", "CREATE INDEX IF NOT EXISTS t_x ON t (x)"])
    create_schema(conn, ["CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)"])  # idempotent
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (2)")
    assert not conn.in_transaction
    with pytest.raises(sqlite3.IntegrityError):
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (3)")
            conn.execute("INSERT INTO t VALUES (1)")  # fails: the whole block is undone
    assert not conn.in_transaction
    with pytest.raises(KeyboardInterrupt):
        with transaction(conn, immediate=False):
            conn.execute("INSERT INTO t VALUES (4)")
            raise KeyboardInterrupt
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 2]
    other = connect(tmp_path / "t.sqlite", durable=True)  # committed rows are visible to others
    assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    other.close()
    conn.close()
