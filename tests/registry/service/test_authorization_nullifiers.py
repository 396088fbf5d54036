"""The nullifier store (registry/service/authorization.py) shared by replicas on one
PostgreSQL database: a claim is one atomic insert, exactly one claimer wins a race across
stores, and a PostgreSQL restart loses no acknowledged claim. The single-store tests run on
both backends in test_authorization.py."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.service.authorization import SqliteNullifierStore, SqlNullifierStore
from registry.storage.database import PostgresDatabase, open_store_database
from registry.storage.migrations import VERSION_TABLE, SchemaTooNew
from tests.support.postgres import PostgresServer

SCHEMA = "zkid_nullifiers"


@pytest.fixture
def stores(postgres_url: str) -> Iterator[list[SqlNullifierStore]]:
    """Two stores on one database: two replicas (or two relays) of one deployment."""
    opened = [SqlNullifierStore(PostgresDatabase(postgres_url, SCHEMA)) for _ in range(2)]
    yield opened
    for store in opened:
        store.close()


def test_the_relays_name_still_opens_an_sqlite_file(tmp_path: Path) -> None:
    store = SqliteNullifierStore(tmp_path / "n.sqlite")
    assert store.claim(1, 5, 1) and not store.claim(1, 5, 1)
    assert not store.database.is_postgres and (tmp_path / "n.sqlite").exists()
    store.close()


def test_schema_is_versioned_and_a_newer_one_refused(tmp_path: Path, database_url: str | None) -> None:
    def open_store() -> SqlNullifierStore:
        return SqlNullifierStore(open_store_database(database_url, tmp_path, "nullifiers.sqlite", durable=True))

    store = open_store()
    store.claim(1, 2, 3)
    with store.database.connection() as conn:
        assert conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [(2,)]
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = 3")
    store.close()
    with pytest.raises(SchemaTooNew):
        open_store()


def test_claims_by_a_relay_are_idempotent_for_it_alone(tmp_path: Path, database_url: str | None) -> None:
    """``claim_as`` (POST /v1/nullifiers/claim): the claiming relay is answered True again
    for the same (group, nullifier, epoch); anyone else, or another epoch, False; a plain
    claim (POST /v1/authorize) is nobody's."""
    store = SqlNullifierStore(open_store_database(database_url, tmp_path, "nullifiers.sqlite", durable=True))
    try:
        assert store.claim_as(1, 5, 9, "0xA") is True
        assert store.claim_as(1, 5, 9, "0xA") is True
        assert store.claim_as(1, 5, 9, "0xB") is False
        assert store.claim_as(1, 5, 8, "0xA") is False
        assert store.claim(1, 5, 9) is False
        assert store.claim(1, 6, 9) is True
        assert store.claim_as(1, 6, 9, "0xA") is False
        assert store.claim_as(2, 5, 9, "0xB") is True  # another group
    finally:
        store.close()


def test_a_version_1_store_keeps_its_nullifiers(tmp_path: Path) -> None:
    """Migration 2 adds the claimer column; nullifiers claimed before stay spent."""
    from tests.registry.relay.support import fresh_nullifier_store

    path = tmp_path / "nullifiers.sqlite"
    fresh_nullifier_store(path)  # the version-1 layout, no version table
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO nullifiers (group_id, nullifier, epoch) VALUES (0, '42', 7)")
    store = SqlNullifierStore(path)
    try:
        assert store.claim_as(0, 42, 7, "0xA") is False
        assert store.claim_as(0, 43, 7, "0xA") is True
    finally:
        store.close()


def test_two_stores_race_for_each_nullifier(stores: list[SqlNullifierStore]) -> None:
    """2 threads, each with its own store, claim the same nullifier at the same moment, 50
    rounds: exactly one True each round."""
    rounds = 50
    barrier = threading.Barrier(2)
    results: list[list[bool]] = [[], []]

    def worker(k: int) -> None:
        for n in range(rounds):
            barrier.wait(timeout=60)
            results[k].append(stores[k].claim(7, 10**70 + n, 1))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a + b for a, b in zip(*results)] == [1] * rounds
    assert stores[0].count() == stores[1].count() == rounds


def test_a_postgres_restart_loses_no_claim(postgres: PostgresServer, postgres_url: str) -> None:
    """Claims acknowledged before PostgreSQL stops are there after it starts again; a claim
    while it is down raises OperationalError (the pool's timeout, not a hang and not a
    False); the first claim after the restart works (the pool reconnects)."""
    store = SqlNullifierStore(PostgresDatabase(postgres_url, SCHEMA, timeout=2.0))
    try:
        before = list(range(1, 21))
        assert all(store.claim(3, n, 1) for n in before)
        postgres.stop()
        try:
            with pytest.raises(sqlite3.OperationalError):
                store.claim(3, 1000, 1)
        finally:
            postgres.start()
        assert store.claim(3, 1001, 1)
        assert not any(store.claim(3, n, 1) for n in before)  # every acknowledged claim is still there
        assert store.count() == len(before) + 1  # and the one refused while down was not recorded
    finally:
        store.close()
