"""registry/storage/database.py: what a database URL shows in messages, and which
PostgreSQL errors reach the stores as "unavailable" (503) rather than as a bug (500)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from registry.service.authorization import SqlNullifierStore
from registry.storage.database import PostgresDatabase, open_store_database, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://zkid:S3cret@db:5432/zkid", "postgresql://zkid:***@db:5432/zkid"),
        # Unescaped '@' or '/' in the password: libpq takes the user info up to the last '@'.
        ("postgresql://zkid:p@S3cret@db/zkid", "postgresql://zkid:***@db/zkid"),
        ("postgresql://zkid:pa/S3cret@db/zkid", "postgresql://zkid:***@db/zkid"),
        # libpq also takes the password as a query parameter.
        ("postgresql://zkid@db/zkid?sslmode=require&password=S3cret", "postgresql://zkid@db/zkid?sslmode=require&password=***"),
        ("postgresql://db/zkid?PASSWORD=S3cret&x=1", "postgresql://db/zkid?PASSWORD=***&x=1"),
        ("postgresql://zkid@db/zkid", "postgresql://zkid@db/zkid"),
    ],
)
def test_redact_url_hides_every_form_of_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "S3cret" not in redact_url(url)


def test_a_read_only_database_is_unavailable_not_an_internal_error(postgres_url: str, tmp_path: Path) -> None:
    """A primary demoted to a standby (or set read-only for maintenance) refuses writes
    with SQLSTATE 25006: the stores must see sqlite3.OperationalError (HTTP 503
    database_unavailable, retried by clients), not a DatabaseError (500 internal)."""
    store = SqlNullifierStore(open_store_database(postgres_url, tmp_path, "nullifiers.sqlite", durable=True))
    try:
        assert store.claim(1, 2, 3)
        dbname = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
            # The pool's connections predate the setting: end them so that new ones read it.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
        with pytest.raises(sqlite3.OperationalError):
            for _ in range(3):  # a terminated pooled connection may cost one attempt first
                try:
                    store.claim(1, 5, 3)
                except sqlite3.OperationalError as exc:
                    if "ReadOnly" in str(exc):
                        raise
    finally:
        store.close()


def test_a_writer_stuck_inside_a_transaction_does_not_block_the_others_forever(postgres_url: str) -> None:
    """A replica paused (SIGSTOP, a frozen VM) inside a store's write transaction holds the
    store's advisory lock: the server ends such an idle session after ``idle_timeout``, so
    the other replicas' writes go on (before: they waited until the paused one resumed),
    and the paused one's write is not acknowledged."""
    stuck = PostgresDatabase(postgres_url, "zkid_stuck", idle_timeout=1.0)
    other = PostgresDatabase(postgres_url, "zkid_stuck", idle_timeout=1.0)
    holding, release = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def paused_writer() -> None:
        try:
            with stuck.transaction() as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                holding.set()
                release.wait(60)  # runs no statement: what the server sees of a paused process
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)
        else:
            outcome.append(None)

    writer = threading.Thread(target=paused_writer, daemon=True)
    writer.start()
    try:
        assert holding.wait(30)
        done = threading.Event()

        def second_writer() -> None:
            with other.transaction() as conn:  # the same store: the same advisory lock
                conn.execute("SELECT 1")
            done.set()

        threading.Thread(target=second_writer, daemon=True).start()
        assert done.wait(30), "a write waited for a paused replica's transaction"
        release.set()
        writer.join(30)
        assert outcome and isinstance(outcome[0], sqlite3.OperationalError)  # not acknowledged
    finally:
        release.set()
        stuck.close()
        other.close()


def test_replicas_starting_together_all_open_their_schemas(postgres_url: str) -> None:
    """Several replicas started at once on a fresh database each create the stores'
    schemas: a concurrent CREATE SCHEMA IF NOT EXISTS can fail with UniqueViolation, which
    stopped a replica at start (before); every one must open."""
    errors: list[BaseException] = []
    for round_ in range(8):
        barrier = threading.Barrier(6)

        def open_schema(name: str = f"zkid_race{round_}") -> None:
            barrier.wait()
            try:
                PostgresDatabase(postgres_url, name, pool_size=1).close()
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=open_schema) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []


def test_the_index_may_stay_idle_in_a_transaction_longer_than_the_other_stores(postgres_url: str, tmp_path: Path) -> None:
    """The index rebuilds big trees between two statements (about 40 s for 1M members):
    its sessions get the long idle-in-transaction limit, the other stores the short one."""
    from registry.service.facade import store_database
    from registry.service.settings import load_settings

    settings = load_settings(data_dir=tmp_path, database_url=postgres_url)
    for file_name, expected in (("index.sqlite", "10min"), ("outbox.sqlite", "30s")):
        db = store_database(settings, file_name)
        try:
            with db.connection() as conn:
                assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == (expected,)
        finally:
            db.close()
