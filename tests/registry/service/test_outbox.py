"""The outbox: validation, duplicates, durability (a killed process), schema versions, and
replicas sharing one database. Every test that is not about SQLite files runs against both
backends (``database_url``: SQLite files, a real PostgreSQL server)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.service.outbox import FILE_NAME, MAX_GROUP_ID, MAX_PER_CALL, Outbox, RegistryError
from registry.storage.migrations import VERSION_TABLE, SchemaTooNew
from tests.registry.conftest import StoreOpener, make_commitments
from tests.support.clock import FakeClock
from tests.support.wait import run_each, run_threads
from zk.field import R

ROOT = Path(__file__).resolve().parents[3]

OpenOutbox = Callable[..., Outbox]


@pytest.fixture
def open_outbox(store_opener: StoreOpener) -> OpenOutbox:
    """``open_outbox(**kwargs)``: an Outbox on this test's database (the same file or
    PostgreSQL database on every call: a reopening, or another replica)."""
    return store_opener(Outbox, FILE_NAME, durable=True)


@pytest.fixture
def outbox(open_outbox: OpenOutbox) -> Outbox:
    return open_outbox()


def test_enqueue_returns_pending_rows(outbox: Outbox) -> None:
    values = make_commitments(3)
    rows = outbox.enqueue(7, values)
    assert [r.commitment for r in rows] == values
    assert all(r.state == "pending" and r.group_id == 7 and r.attempts == 0 and r.tx_hash is None for r in rows)
    assert len({r.id for r in rows}) == 3
    assert outbox.counts() == {"pending": 3, "sent": 0, "included": 0, "final": 0, "failed": 0}
    assert outbox.get(7, values[1]) == rows[1]
    assert outbox.get(8, values[1]) is None


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ([0], "invalid_commitment"),
        ([R], "invalid_commitment"),
        ([R + 5], "invalid_commitment"),
        ([-1], "invalid_commitment"),
        ([True], "invalid_commitment"),
        (["12"], "invalid_commitment"),
        ([1.0], "invalid_commitment"),
        ([], "malformed"),
        ("123", "malformed"),
        (123, "malformed"),
        ([5, 6, 5], "duplicate"),
        (list(range(1, MAX_PER_CALL + 2)), "too_many"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(outbox: Outbox, values: object, code: str) -> None:
    with pytest.raises(RegistryError) as err:
        outbox.enqueue(1, values)  # type: ignore[arg-type]
    assert err.value.code == code
    assert 400 <= err.value.status < 500
    assert outbox.counts()["pending"] == 0


@pytest.mark.parametrize("group", [-1, 2**63, True, "1", None])
def test_bad_group_id_is_refused(outbox: Outbox, group: object) -> None:
    with pytest.raises(RegistryError) as err:
        outbox.enqueue(group, [1])  # type: ignore[arg-type]
    assert err.value.code == "malformed" and err.value.status == 400


def test_group_id_limit_is_the_documented_one(outbox: Outbox) -> None:
    """docs/api.md: group ids are at most 2^53 - 1; one more is ``malformed``, and the
    message names the field and the real range."""
    (row,) = outbox.enqueue(MAX_GROUP_ID, [1])
    assert row.group_id == MAX_GROUP_ID == 2**53 - 1
    with pytest.raises(RegistryError) as err:
        outbox.enqueue(MAX_GROUP_ID + 1, [1])
    assert err.value.code == "malformed" and err.value.status == 400
    assert err.value.message == f"group_id must be an integer in [0, {2**53 - 1}]"


def test_largest_commitment_is_accepted_never_reduced(outbox: Outbox) -> None:
    (row,) = outbox.enqueue(0, [R - 1])
    assert row.commitment == R - 1
    assert outbox.get(0, R - 1) is not None


def test_one_bad_value_rejects_the_whole_request(outbox: Outbox) -> None:
    with pytest.raises(RegistryError):
        outbox.enqueue(0, [1, 2, R])
    assert outbox.rows() == []


def test_duplicate_of_pending_registration(outbox: Outbox) -> None:
    a, b, c = make_commitments(3)
    outbox.enqueue(0, [a])
    with pytest.raises(RegistryError) as err:
        outbox.enqueue(0, [b, a])  # all or nothing: b is not kept either
    assert err.value.code == "duplicate" and err.value.status == 409
    assert outbox.get(0, b) is None
    # the same commitment in another group is a different registration
    outbox.enqueue(1, [a])
    # still a duplicate while sent (in flight)
    row = outbox.get(0, a)
    assert row is not None
    outbox.mark_sent([row.id], "0x" + "ab" * 32)
    with pytest.raises(RegistryError):
        outbox.enqueue(0, [a])
    outbox.enqueue(0, [c])


def test_duplicate_of_indexed_member(open_outbox: OpenOutbox) -> None:
    members = {(0, 11)}
    box = open_outbox(is_member=lambda g, c: (g, c) in members)
    with pytest.raises(RegistryError) as err:
        box.enqueue(0, [12, 11])
    assert err.value.code == "duplicate"
    assert box.rows() == []
    box.enqueue(1, [11])
    box.close()


def test_reregistration_after_failure_or_inclusion(outbox: Outbox) -> None:
    (row,) = outbox.enqueue(0, [99])
    outbox.mark_failed([row.id], "CallerIsNotAdmin")
    (again,) = outbox.enqueue(0, [99])  # a failed registration can be made again
    assert again.id != row.id
    assert outbox.get(0, 99) == again  # the active row wins
    outbox.mark_sent([again.id], "0x" + "01" * 32)
    outbox.mark_included([again.id], 12)
    got = outbox.get(0, 99)
    assert got is not None and got.state == "final" and got.block_number == 12


def test_concurrent_registrations_of_one_commitment(open_outbox: OpenOutbox) -> None:
    box = open_outbox()
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            box.enqueue(3, [4242])
            result = "ok"
        except RegistryError as exc:
            result = exc.code
        with lock:
            outcomes.append(result)

    run_threads(worker, 8)
    assert sorted(outcomes) == ["duplicate"] * 7 + ["ok"]
    assert len(box.rows()) == 1
    box.close()


def test_state_transitions_and_queries(open_outbox: OpenOutbox) -> None:
    clock = FakeClock(1000.0)
    box = open_outbox(clock=clock)
    first = box.enqueue(0, make_commitments(3, seed=10))
    clock.advance(5)
    box.enqueue(2, make_commitments(2, seed=20))
    assert box.pending_groups() == [(0, 3, 1000.0), (2, 2, 1005.0)]
    taken = box.take_pending(0, 2)
    # Within an hour, in the order of the random ids, not in arrival order.
    assert [r.id for r in taken] == sorted(r.id for r in first)[:2]
    box.mark_attempt([r.id for r in taken])
    assert [r.attempts for r in box.attempted_pending()] == [1, 1]
    box.mark_sent([r.id for r in taken], "0x" + "cd" * 32)
    assert {r.state for r in box.rows("sent")} == {"sent"}
    assert box.unsettled_count() == 5
    box.mark_pending([taken[0].id], "dropped")
    back = box.get(0, taken[0].commitment)
    assert back is not None and back.state == "pending" and back.tx_hash is None and back.last_error == "dropped"
    box.mark_included([taken[1].id], 77)
    box.mark_failed([first[2].id], "refused")
    assert box.counts() == {"pending": 3, "sent": 0, "included": 0, "final": 1, "failed": 1}
    # terminal states do not move back
    box.mark_pending([taken[1].id, first[2].id])
    assert box.counts() == {"pending": 3, "sent": 0, "included": 0, "final": 1, "failed": 1}
    with pytest.raises(ValueError):
        box.rows("unknown")
    box.close()


def test_rows_survive_reopening(open_outbox: OpenOutbox) -> None:
    box = open_outbox()
    values = make_commitments(5)
    box.enqueue(0, values)
    box.close()
    again = open_outbox()
    assert sorted(r.commitment for r in again.rows()) == sorted(values)
    with pytest.raises(RegistryError):
        again.enqueue(0, [values[2]])
    again.close()


def test_acknowledged_registration_survives_a_killed_process(
    tmp_path: Path, database_url: str | None, open_outbox: OpenOutbox
) -> None:
    """The process dies (no close, no atexit) right after enqueue returns: the row is there."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from registry.service.outbox import FILE_NAME, Outbox\n"
        "from registry.storage.database import open_store_database\n"
        f"box = Outbox(open_store_database({database_url!r}, Path({str(tmp_path)!r}), FILE_NAME, durable=True))\n"
        "box.enqueue(5, [111, 222])\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    box = open_outbox()
    assert sorted(r.commitment for r in box.rows()) == [111, 222]


def test_mined_rows_reopen_when_the_chain_rolls_back(outbox: Outbox) -> None:
    rows = outbox.enqueue(0, make_commitments(3, seed=900))
    ids = [r.id for r in rows]
    outbox.mark_sent(ids, "0x" + "0a" * 32)
    outbox.mark_included(ids[:1], 10)  # final
    outbox.mark_included(ids[1:2], 20, final=False)  # mined, not yet confirmed
    assert outbox.unsettled_count() == 1 and outbox.unconfirmed_count() == 1
    assert outbox.reopen_from(21) == 0
    assert outbox.reopen_from(15) == 1  # only the row mined at 20
    back = outbox.get(0, rows[1].commitment)
    assert back is not None and back.state == "sent" and back.block_number is None and back.tx_hash == "0x" + "0a" * 32
    assert outbox.reopen_from(0) == 1  # the final one too: a rollback can go below it
    assert {r.state for r in outbox.rows()} == {"sent"}
    assert [r.id for r in outbox.in_flight()] == sorted(ids)


def test_old_outbox_is_migrated_with_confirmed_rows_final(tmp_path: Path) -> None:
    """An outbox written before ``final`` existed (``included`` was terminal) opens with
    those rows ``final`` and everything else as it was."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE registrations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, group_id INTEGER NOT NULL, commitment TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'included', 'failed')),
            tx_hash TEXT, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, block_number INTEGER, last_error TEXT);
        CREATE UNIQUE INDEX registrations_active ON registrations (group_id, commitment) WHERE state IN ('pending', 'sent');
        INSERT INTO registrations (group_id, commitment, state, created_at, updated_at, block_number, tx_hash)
            VALUES (0, '5', 'included', 1, 1, 9, '0xaa'), (0, '6', 'pending', 2, 2, NULL, NULL);
        """
    )
    conn.commit()
    conn.close()
    box = Outbox(path)
    assert box.counts() == {"pending": 1, "sent": 0, "included": 0, "final": 1, "failed": 0}
    five = box.get(0, 5)
    assert five is not None and five.block_number == 9 and five.tx_hash == "0xaa"
    box.close()
    again = Outbox(path)  # opening twice migrates once
    assert again.counts()["final"] == 1
    again.close()


def test_rows_keep_hours_and_random_ids_only(tmp_path: Path) -> None:
    """docs/privacy.md: beside a commitment, no time finer than the hour and no id that
    grows with arrival; the batcher's waiting time lives in memory."""
    import sqlite3

    clock = FakeClock(7 * 3600 + 1234.5)
    path = tmp_path / "o.sqlite"
    box = Outbox(path, clock=clock)
    rows = []
    for value in make_commitments(40, seed=3):
        rows.append(box.enqueue(0, [value])[0])
        clock.advance(1.25)
    assert box.pending_groups() == [(0, 40, 7 * 3600 + 1234.5)]  # from memory, to the second
    ids = [r.id for r in rows]
    assert ids != sorted(ids) and ids != sorted(ids, reverse=True)
    box.mark_sent(ids[:10], "0x" + "ab" * 32)
    box.close()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        times = {t for row in db.execute("SELECT created_at, updated_at FROM registrations") for t in row}
        assert times == {7 * 3600 + 3600 * 0}  # every time is the start of the hour
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is None
        assert "AUTOINCREMENT" not in db.execute("SELECT sql FROM sqlite_master WHERE name = 'registrations'").fetchone()[0]


def test_schema_1_outbox_is_rekeyed_and_rewritten(tmp_path: Path) -> None:
    """An outbox of schema 1 (AUTOINCREMENT ids, times to the microsecond) opens with random
    ids and hours, and no page of the file keeps the old values."""
    import sqlite3

    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE registrations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, group_id INTEGER NOT NULL, commitment TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'included', 'final', 'failed')),
            tx_hash TEXT, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, block_number INTEGER, last_error TEXT);
        CREATE UNIQUE INDEX registrations_active ON registrations (group_id, commitment) WHERE state IN ('pending', 'sent', 'included');
        CREATE TABLE spend (tx_hash TEXT PRIMARY KEY, at REAL NOT NULL, wei INTEGER NOT NULL);
        INSERT INTO registrations (group_id, commitment, state, created_at, updated_at, block_number, tx_hash)
            VALUES (0, '5', 'final', 1712345678.123456, 1712345679.654321, 9, '0xaa'),
                   (0, '6', 'pending', 1712345680.987654, 1712345680.987654, NULL, NULL);
        PRAGMA user_version = 1;
        """
    )
    conn.commit()
    conn.close()
    box = Outbox(path)
    five, six = box.get(0, 5), box.get(0, 6)
    assert five is not None and five.state == "final" and five.block_number == 9 and five.tx_hash == "0xaa"
    assert six is not None and six.state == "pending"
    assert five.created_at == six.created_at == 1712345678 // 3600 * 3600
    assert {five.id, six.id}.isdisjoint({1, 2})
    box.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    raw = path.read_bytes()
    for old in (1712345678.123456, 1712345680.987654):
        import struct

        assert struct.pack(">d", old) not in raw  # SQLite stores REALs big-endian


def test_active_rows_are_unique_in_the_database(outbox: Outbox) -> None:
    """"Already pending" is a unique index, not only the enqueue's own checks: a second
    active row of one commitment is refused by the database itself, whoever writes it
    (another replica included); a final row does not block a new registration."""
    (row,) = outbox.enqueue(4, [4444])
    insert = (
        "INSERT INTO registrations (id, group_id, commitment, state, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 0, 0)"
    )
    for state in ("pending", "sent", "included"):
        with pytest.raises(sqlite3.IntegrityError), outbox.database.transaction(serialize=False) as conn:
            conn.execute(insert, (row.id + 1, 4, "4444", state))
    with outbox.database.connection() as conn:
        conn.execute(insert, (row.id + 1, 4, "4444", "final"))
    assert len(outbox.rows(group_id=4)) == 2


def test_schema_is_versioned_and_a_newer_one_refused(open_outbox: OpenOutbox) -> None:
    box = open_outbox()
    box.enqueue(0, [5])
    with box.database.connection() as conn:
        assert conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [(1,)]
    box.close()
    again = open_outbox()
    assert again.counts()["pending"] == 1  # reopening migrates nothing
    with again.database.connection() as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = 99")
    with pytest.raises(SchemaTooNew):
        open_outbox()


def test_sqlite_outbox_from_before_versions_adopts_version_1(tmp_path: Path) -> None:
    """A file of ``PRAGMA user_version`` 2 (the layout before the version table) opens
    unchanged as version 1; a user_version above 2 is refused."""
    path = tmp_path / "o.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE registrations (id INTEGER PRIMARY KEY, group_id INTEGER NOT NULL, commitment TEXT NOT NULL,"
                 " state TEXT NOT NULL, tx_hash TEXT, attempts INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
                 " updated_at INTEGER NOT NULL, block_number INTEGER, last_error TEXT)")
    conn.execute("INSERT INTO registrations (id, group_id, commitment, state, created_at, updated_at) VALUES (7, 0, '9', 'pending', 0, 0)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    box = Outbox(path)
    assert [(r.id, r.commitment) for r in box.rows()] == [(7, 9)]
    box.close()
    with sqlite3.connect(path) as db:
        assert db.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [(1,)]
        db.execute("PRAGMA user_version = 3")
    with pytest.raises(SchemaTooNew):
        Outbox(path)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_replicas_race_for_one_commitment(open_outbox: OpenOutbox) -> None:
    """Two Outbox objects on one PostgreSQL database (two replicas) enqueue the same
    commitment at the same moment, round after round: exactly one is accepted, the other
    is told ``duplicate``, and one row exists."""
    replicas = [open_outbox(), open_outbox()]
    rounds = 20
    for value in make_commitments(rounds, seed=70):
        barrier = threading.Barrier(2)
        outcomes: list[str] = []
        lock = threading.Lock()

        def worker(box: Outbox, value: int = value) -> None:
            barrier.wait()
            try:
                box.enqueue(9, [value])
                result = "ok"
            except RegistryError as exc:
                result = exc.code
            with lock:
                outcomes.append(result)

        run_each(worker, replicas)
        assert sorted(outcomes) == ["duplicate", "ok"]
    assert len(replicas[0].rows(group_id=9)) == rounds
    assert replicas[1].counts()["pending"] == rounds


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_replicas_see_each_others_writes(open_outbox: OpenOutbox) -> None:
    """A follower's registration is the leader's to send; the leader's transitions are
    what the follower reports (nothing of the rows is cached per process)."""
    follower, leader = open_outbox(), open_outbox()
    rows = follower.enqueue(1, make_commitments(3, seed=5))
    assert [g for g, n, _ in leader.pending_groups()] == [1]
    taken = leader.take_pending(1, 10)
    assert sorted(r.id for r in taken) == sorted(r.id for r in rows)
    leader.mark_sent([r.id for r in taken], "0x" + "11" * 32)
    leader.record_spend("0x" + "11" * 32, 10**15)
    got = follower.get(1, rows[0].commitment)
    assert got is not None and got.state == "sent"
    assert follower.spent_since(0) == 10**15
