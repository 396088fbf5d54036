"""Group commit (registry/service/group_commit.py): jobs queued behind a commit share the
next one; a job's refusal is rolled back alone; a failed COMMIT fails every job of its
batch and keeps nothing; nothing is acknowledged before its commit (a process killed
under concurrent registrations keeps every acknowledged one)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from registry.service.authorization import SqlNullifierStore
from registry.service.group_commit import GroupCommit
from registry.service.outbox import FILE_NAME, Outbox, RegistryError
from registry.storage.database import SqliteDatabase
from tests.registry.conftest import make_commitments
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[3]


def _store(tmp_path: Path) -> tuple[SqliteDatabase, GroupCommit, threading.Lock]:
    db = SqliteDatabase(tmp_path / "g.sqlite", durable=True)
    with db.connection() as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE t (v INTEGER PRIMARY KEY,"
            " p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    lock = threading.Lock()

    def connection() -> sqlite3.Connection:  # the leader thread's connection, foreign keys on
        conn = db.raw()
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    return db, GroupCommit(connection, lock), lock


def _queued(group: GroupCommit, lock: threading.Lock, jobs: list[Any]) -> list[tuple[str, Any]]:
    """Run ``jobs`` from one thread each while the writer lock is held, so they all queue
    behind the first; release it; each job's (outcome, value)."""
    out: list[tuple[str, Any]] = [("", None)] * len(jobs)

    def run(i: int) -> None:
        try:
            out[i] = ("ok", group.run(jobs[i]))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            out[i] = ("error", exc)

    with lock:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
        threads[0].start()
        # The first job leads: it takes its batch (itself) and waits for the writer lock.
        wait_until(lambda: group._leading and not group._queue, 10, "a leader")  # noqa: SLF001
        for t in threads[1:]:
            t.start()
        wait_until(lambda: len(group._queue) == len(jobs) - 1, 10, "every job queued")  # noqa: SLF001
    for t in threads:
        t.join(30)
    return out


def _insert(v: int, parent: int | None = None) -> Any:
    def job(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v, p) VALUES (?, ?)", (v, parent))
        return v

    return job


def _values(db: SqliteDatabase) -> list[int]:
    with db.connection() as conn:
        return [int(r[0]) for r in conn.execute("SELECT v FROM t ORDER BY v")]


def test_jobs_queued_behind_a_commit_share_the_next_and_a_refusal_is_rolled_back_alone(tmp_path: Path) -> None:
    db, group, lock = _store(tmp_path)
    out = _queued(group, lock, [_insert(1), _insert(2), _insert(2), _insert(3)])
    assert [o[0] for o in out] == ["ok", "ok", "error", "ok"]
    assert isinstance(out[2][1], sqlite3.IntegrityError)
    assert [o[1] for o in out if o[0] == "ok"] == [1, 2, 3]
    assert _values(db) == [1, 2, 3]
    assert group.commits == 2  # the first job alone, then everything queued behind it
    db.close()


def test_a_failed_commit_fails_every_job_of_its_batch_and_keeps_nothing(tmp_path: Path) -> None:
    """A deferred foreign key fails at COMMIT: a real fault of the whole transaction."""
    db, group, lock = _store(tmp_path)
    first = group.run(_insert(10))  # alone: committed
    out = _queued(group, lock, [_insert(11), _insert(12, parent=999), _insert(13)])
    assert first == 10 and out[0] == ("ok", 11)  # its own batch
    assert [o[0] for o in out[1:]] == ["error", "error"]  # the batch with the bad row failed as a whole
    assert all(isinstance(o[1], sqlite3.IntegrityError) for o in out[1:])
    # Each waiting thread raised its own exception object (equal in type, message and
    # SQLite error code), the batch's failure chained as its cause.
    assert out[1][1] is not out[2][1] and str(out[1][1]) == str(out[2][1])
    assert out[1][1].sqlite_errorcode == out[2][1].sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
    assert _values(db) == [10, 11]
    assert group.commits == 2
    group.run(_insert(14))  # the store works on afterwards
    assert 14 in _values(db)
    db.close()


def test_a_job_that_writes_through_the_store_again_joins_its_own_transaction(tmp_path: Path) -> None:
    """A job calling ``run`` again on its thread (a nested write through the same store)
    neither waits for itself (a hang) nor commits early: its writes are part of the job;
    a nested refusal undoes the nested writes only; an outer refusal undoes both."""
    db, group, _ = _store(tmp_path)

    def refused(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (3)")
        raise RegistryError("duplicate", "refused")

    def outer(conn: sqlite3.Connection) -> list[Any]:
        conn.execute("INSERT INTO t (v) VALUES (1)")
        try:
            group.run(refused)
        except RegistryError:
            pass
        return [group.run(_insert(2)), group.commits]

    def outer_refused(conn: sqlite3.Connection) -> None:
        group.run(_insert(4))
        raise RegistryError("duplicate", "refused")

    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(group.run(outer)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "a nested run waited for itself"
    assert out == [[2, 0]]  # the nested result came back before the (one) commit
    assert _values(db) == [1, 2] and group.commits == 1
    with pytest.raises(RegistryError):
        group.run(outer_refused)
    assert _values(db) == [1, 2]
    db.close()


def test_a_full_disk_fails_its_whole_batch_with_its_own_error(tmp_path: Path) -> None:
    """SQLITE_FULL (a real one: the file may not grow past ``max_page_count``) rolls back
    the whole transaction, not one savepoint: every job of the batch gets that error
    (not "no such savepoint"), nothing of the batch is kept, and none waits forever."""
    db = SqliteDatabase(tmp_path / "full.sqlite", durable=True)
    with db.connection() as conn:
        conn.execute("CREATE TABLE t (v INTEGER PRIMARY KEY, b BLOB)")
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])

    def connection() -> sqlite3.Connection:
        conn = db.raw()
        conn.execute(f"PRAGMA max_page_count = {pages + 8}")
        return conn

    lock = threading.Lock()
    group = GroupCommit(connection, lock)

    def insert(v: int, size: int) -> Any:
        def job(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t (v, b) VALUES (?, ?)", (v, b"x" * size))
            return v

        return job

    out = _queued(group, lock, [insert(1, 10), insert(2, 10), insert(3, 1_000_000), insert(4, 10)])
    assert out[0] == ("ok", 1)  # its own batch
    assert [o[0] for o in out[1:]] == ["error"] * 3
    assert all(isinstance(o[1], sqlite3.OperationalError) and "full" in str(o[1]) for o in out[1:])
    with db.connection() as conn:
        assert [r[0] for r in conn.execute("SELECT v FROM t")] == [1]
    assert group.run(insert(5, 10)) == 5  # the store works on afterwards
    db.close()


def test_concurrent_claims_each_win_once_with_group_commit(tmp_path: Path) -> None:
    store = SqlNullifierStore(tmp_path / "n.sqlite")
    results: list[bool] = []
    guard = threading.Lock()

    def claim(n: int) -> None:
        won = store.claim(0, n % 5, 1)
        with guard:
            results.append(won)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(True) == 5 and len(results) == 40
    assert store.count() == 5
    assert store.claim_as(0, 77, 1, "0xrelay") and store.claim_as(0, 77, 1, "0xrelay")
    assert not store.claim_as(0, 77, 1, "0xother")
    store.close()


def test_outbox_enqueues_share_commits_and_keep_their_own_refusals(tmp_path: Path) -> None:
    box = Outbox(tmp_path / FILE_NAME)
    values = make_commitments(6, seed=4242)
    box.enqueue(0, [values[0]])
    group = box._group  # noqa: SLF001
    assert group is not None
    lock = box._write_lock  # noqa: SLF001
    errors: list[RegistryError] = []

    def enqueue(c: int) -> None:
        try:
            box.enqueue(0, [c])
        except RegistryError as exc:
            errors.append(exc)

    with lock:  # hold the writer lock: the enqueues below queue behind one another
        threads = [threading.Thread(target=enqueue, args=(c,)) for c in [values[1], values[2], values[0], values[3]]]
        for t in threads:
            t.start()
        wait_until(lambda: len(group._queue) >= 3, 10, "enqueues queued behind the first")  # noqa: SLF001
    for t in threads:
        t.join(30)
    assert [e.code for e in errors] == ["duplicate"]  # values[0] was pending already
    assert sorted(r.commitment for r in box.rows()) == sorted(values[:4])
    box.close()


_KILLED = """
import os, sys, threading
from pathlib import Path
from registry.service.outbox import FILE_NAME, Outbox
box = Outbox(Path(sys.argv[1]) / FILE_NAME)
out = threading.Lock()
def worker(k):
    for i in range(100000):
        c = k * 1000000 + i + 1
        box.enqueue(0, [c])
        with out:
            sys.stdout.write(f"{c}\\n"); sys.stdout.flush()
for k in range(8):
    threading.Thread(target=worker, args=(k,), daemon=True).start()
threading.Event().wait()
"""


def test_a_killed_process_loses_no_acknowledged_registration(tmp_path: Path) -> None:
    """8 threads enqueue and print each commitment once ``enqueue`` returned; the process
    is killed (SIGKILL: no close, no atexit) mid-stream: every printed one is in the file."""
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    acknowledged: list[int] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    proc.kill()
    proc.wait(30)
    rest = proc.stdout.read()
    acknowledged += [int(x) for x in rest.split()]
    assert len(acknowledged) >= 300
    box = Outbox(tmp_path / FILE_NAME)
    stored = {r.commitment for r in box.rows()}
    assert set(acknowledged) <= stored
    box.close()


@pytest.mark.parametrize("jobs", [1, 3])
def test_every_job_gets_its_own_result(tmp_path: Path, jobs: int) -> None:
    db, group, lock = _store(tmp_path)
    out = _queued(group, lock, [_insert(100 + i) for i in range(jobs)])
    assert out == [("ok", 100 + i) for i in range(jobs)]
    db.close()
