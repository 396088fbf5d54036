"""The admission store (registry/service/admission.py AdmissionStore) on both backends
(``database_url``: an SQLite file, a real PostgreSQL server), and shared by two replicas on
one PostgreSQL database. The HTTP flows are in test_admission.py."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from registry._utils.integers import MAX_GROUP_ID, UINT64_MAX
from registry.service.admission import FILE_NAME, AdmissionStore, GroupAdmission, hash_invite
from registry.service.outbox import RegistryError
from registry.storage.database import open_store_database
from registry.storage.migrations import VERSION_TABLE, SchemaTooNew
from tests.registry.conftest import StoreOpener
from tests.support.clock import FakeClock
from tests.support.wait import run_each

OpenStore = Callable[..., AdmissionStore]


@pytest.fixture
def open_store(store_opener: StoreOpener) -> OpenStore:
    """``open_store(clock=...)``: an AdmissionStore on this test's database (the same one
    on every call: a reopening, or another replica)."""
    return store_opener(AdmissionStore, FILE_NAME, durable=True)


def test_group_records(open_store: OpenStore) -> None:
    store = open_store()
    assert store.get(1) is None and store.records() == []
    zk = GroupAdmission(1, "zk", admission_group=MAX_GROUP_ID, round=UINT64_MAX, send=True)
    store.put(zk)
    store.put(GroupAdmission(0, "closed", send=False))
    # Every field comes back exactly, the largest round included (schema 2 keeps it as text:
    # schema 1 made it an inexact REAL in SQLite, and PostgreSQL's BIGINT refused it).
    assert store.get(1) == zk
    assert store.records() == [GroupAdmission(0, "closed", send=False), zk]
    changed = GroupAdmission(1, "invite", round=7, send=False)
    store.put(changed)
    assert store.get(1) == changed
    assert store.put_if_absent(GroupAdmission(1, "open")) == changed  # the group's record stays
    assert store.put_if_absent(GroupAdmission(2, "open")) == GroupAdmission(2, "open")
    assert open_store().get(1) == changed  # durable: another store (replica) reads it


def test_a_replica_sees_another_replicas_new_record(tmp_path: Path, postgres_url: str) -> None:
    """Group records are cached on SQLite only (one process writes the file): on PostgreSQL
    a record read once is read again, so a policy changed by another replica (an open group
    closed, a new zk round) takes effect at once everywhere."""
    one, other = (
        AdmissionStore(open_store_database(postgres_url, tmp_path, FILE_NAME, durable=True)) for _ in range(2)
    )
    one.put(GroupAdmission(5, "open"))
    assert other.get(5) == GroupAdmission(5, "open") and other.get(5) == GroupAdmission(5, "open")
    one.put(GroupAdmission(5, "closed", send=False))
    try:
        assert other.get(5) == GroupAdmission(5, "closed", send=False)
    finally:
        one.close()
        other.close()


def test_admission_nullifiers(open_store: OpenStore) -> None:
    store = open_store()
    big = 2**254 + 12345
    assert store.claim_nullifier(1, UINT64_MAX, big)
    assert not store.claim_nullifier(1, UINT64_MAX, big)
    assert store.claim_nullifier(1, 0, big) and store.claim_nullifier(2, UINT64_MAX, big)
    store.release_nullifier(1, UINT64_MAX, big)
    assert store.nullifier_count() == 2
    assert store.claim_nullifier(1, UINT64_MAX, big)  # a released claim is usable again


def test_invites(open_store: OpenStore) -> None:
    clock = FakeClock(10_000.0)
    store = open_store(clock=clock)
    codes = store.create_invites(4, 3, expires_at=20_000.0)
    assert len(set(codes)) == 3 and store.invite_count(4) == 3 and store.invite_count(5) == 0
    digest = store.claim_invite(4, codes[0])
    assert digest == hash_invite(codes[0])
    for group, code, refusal in ((4, codes[0], "invite_used"), (5, codes[1], "invite_invalid"), (4, "zki_nope", "invite_invalid")):
        with pytest.raises(RegistryError) as err:
            store.claim_invite(group, code)
        assert err.value.code == refusal
    store.release_invite(digest)
    assert store.claim_invite(4, codes[0]) == digest
    clock.advance(10_000)
    with pytest.raises(RegistryError) as err:
        store.claim_invite(4, codes[1])
    assert err.value.code == "invite_expired"
    with pytest.raises(RegistryError):
        store.create_invites(4, 1, expires_at=clock())  # not in the future


def test_schema_is_versioned_and_a_newer_one_refused(open_store: OpenStore) -> None:
    store = open_store()
    with store.database.connection() as conn:
        assert conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [(2,)]
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = 3")
    with pytest.raises(SchemaTooNew):
        open_store()


def test_an_sqlite_store_from_before_versions_keeps_its_records(tmp_path: Path) -> None:
    """A file of the layout before the version table (round INTEGER) adopts version 1 and
    is migrated to 2: every record, nullifier and invite stays."""
    path = tmp_path / FILE_NAME
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE group_admission (group_id INTEGER PRIMARY KEY, policy TEXT NOT NULL, admission_group INTEGER,
            round INTEGER NOT NULL, send INTEGER NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE admission_nullifiers (group_id INTEGER NOT NULL, round TEXT NOT NULL, nullifier TEXT NOT NULL,
            PRIMARY KEY (group_id, round, nullifier)) WITHOUT ROWID;
        CREATE TABLE invites (code_hash TEXT PRIMARY KEY, group_id INTEGER NOT NULL, expires_at REAL NOT NULL,
            created_at REAL NOT NULL, used_at REAL) WITHOUT ROWID;
        INSERT INTO group_admission VALUES (3, 'zk', 1, '42', 1, 5.0), (1, 'closed', NULL, '0', 0, 5.0);
        INSERT INTO admission_nullifiers VALUES (3, '42', '99');
        """
    )
    conn.commit()
    conn.close()
    store = AdmissionStore(path)
    assert store.records() == [GroupAdmission(1, "closed", send=False), GroupAdmission(3, "zk", admission_group=1, round=42)]
    assert not store.claim_nullifier(3, 42, 99)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone() == (2,)
        assert db.execute("SELECT typeof(round) FROM group_admission").fetchall() == [("text",), ("text",)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_replicas_race_for_one_credential(open_store: OpenStore) -> None:
    """Two stores on one PostgreSQL database claim the same admission nullifier and the
    same invite at the same moment, 20 rounds: exactly one wins each."""
    replicas = [open_store(), open_store()]
    codes = replicas[0].create_invites(6, 20, expires_at=2**40)
    for n, code in enumerate(codes):
        barrier = threading.Barrier(2)
        wins: list[str] = []
        lock = threading.Lock()

        def worker(store: AdmissionStore, n: int = n, code: str = code) -> None:
            barrier.wait(timeout=60)
            won = []
            if store.claim_nullifier(6, 1, 10**60 + n):
                won.append("nullifier")
            try:
                store.claim_invite(6, code)
                won.append("invite")
            except RegistryError as exc:
                assert exc.code == "invite_used"
            with lock:
                wins.extend(won)

        run_each(worker, replicas)
        assert sorted(wins) == ["invite", "nullifier"]
    assert replicas[1].nullifier_count() == 20
