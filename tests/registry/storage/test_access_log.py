"""The connection log (registry/storage/access_log.py): only (hour, IP), no counts, bounded retention,
no order among the clients of an hour (docs/privacy.md). Tests not about the SQLite file
run against both backends (``database_url``: SQLite file, a real PostgreSQL server)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from registry.storage.access_log import FILE_NAME, AccessLog, AccessLogMiddleware, client_ip
from registry.storage.database import open_store_database
from registry.storage.migrations import VERSION_TABLE

HOUR = 3600

OpenLog = Callable[..., AccessLog]


@pytest.fixture
def open_log(tmp_path: Path, database_url: str | None) -> Iterator[OpenLog]:
    """``open_log(retention_hours, **kwargs)``: an AccessLog on this test's database (the
    same file or PostgreSQL database on every call: a restart, or another replica)."""

    def make(*args: Any, **kwargs: Any) -> AccessLog:
        return AccessLog(open_store_database(database_url, tmp_path, FILE_NAME, durable=False), *args, **kwargs)

    yield make


@pytest.fixture
def stored(tmp_path: Path, database_url: str | None) -> Iterator[Callable[[], list[tuple[int, str]]]]:
    """``stored()``: the rows written to the database, read through a connection of its own."""
    reader = open_store_database(database_url, tmp_path, FILE_NAME, durable=False)

    def read() -> list[tuple[int, str]]:
        with reader.connection() as conn:
            try:
                rows = conn.execute("SELECT hour, ip FROM connections ORDER BY hour, ip").fetchall()
            except sqlite3.OperationalError:  # no table yet
                return []
        return [(int(h), str(i)) for h, i in rows]

    yield read
    reader.close()


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        assert tables == ["connections", VERSION_TABLE]  # the second holds one number
        return [r[1] for r in db.execute("PRAGMA table_info(connections)")]


def test_stores_only_hour_and_ip(tmp_path: Path, open_log: OpenLog, database_url: str | None) -> None:
    """No count: how many requests an address made in an hour is a fingerprint of what it
    did (the sizes of its conversations, how long it polled), joinable across stores."""
    log = open_log(72)
    log.record("127.0.0.1", 1000.7)
    log.record("127.0.0.1", 1000.2)  # same hour: one row, whatever the number of requests
    log.record("10.0.0.2", 1000.5)
    log.record(None, 3599)
    log.record("10.0.0.2", 3600)  # the next hour
    assert log.flush() == 4
    assert log.rows() == [(0, "10.0.0.2"), (0, "127.0.0.1"), (0, "unknown"), (HOUR, "10.0.0.2")]
    log.close()
    if database_url is None:
        assert _columns(tmp_path / FILE_NAME) == ["hour", "ip"]


def test_the_current_hour_stays_in_memory_until_it_is_over(open_log: OpenLog, stored: Callable[[], Any]) -> None:
    """Written only once the hour is over (or at close), in one transaction: nothing on disk
    tells which client of the hour came first."""
    now = [10 * HOUR + 5.0]
    log = open_log(72, clock=lambda: now[0])
    log.record("192.0.2.1")
    log.record("192.0.2.1")
    assert log.flush() == 0 and stored() == []
    assert log.rows() == [(10 * HOUR, "192.0.2.1")]  # an operator still sees the current hour
    now[0] = 11 * HOUR
    assert log.flush() == 1
    assert stored() == [(10 * HOUR, "192.0.2.1")]
    log.record("192.0.2.1")
    log.close()  # writes the open hour too
    assert stored() == [(10 * HOUR, "192.0.2.1"), (11 * HOUR, "192.0.2.1")]


def test_replicas_sharing_a_database_write_each_address_once(open_log: OpenLog, stored: Callable[[], Any]) -> None:
    """Two replicas (two AccessLog objects on one database) note their own addresses and
    write the same (hour, ip) rows: one row each; a purge by one empties the hour for both."""
    now = [30 * HOUR + 1.0]
    a, b = open_log(2, clock=lambda: now[0]), open_log(2, clock=lambda: now[0])
    for _ in range(3):
        a.record("192.0.2.1")
    b.record("192.0.2.1")
    b.record("192.0.2.9")
    now[0] = 31 * HOUR
    assert a.flush() == 1
    assert b.flush() == 1  # one of its two rows existed already
    assert stored() == [(30 * HOUR, "192.0.2.1"), (30 * HOUR, "192.0.2.9")]
    assert a.rows() == b.rows() == stored()
    assert b.purge(now=33 * HOUR) == 2
    assert a.rows() == [] and stored() == []
    a.close()
    b.close()


def test_raw_file_shows_no_arrival_order(tmp_path: Path) -> None:
    """The rows of an hour are written in key order: their bytes in the file (cells are laid
    out in insertion order within a page) follow the address order, not the arrival order."""
    path = tmp_path / "a.sqlite"
    log = AccessLog(path, 72, clock=lambda: 5 * HOUR + 10)
    arrival = ["203.0.113.7", "203.0.113.2", "203.0.113.9", "203.0.113.1", "203.0.113.5"]
    for ip in arrival:
        log.record(ip)
    log.close()
    raw = path.read_bytes()
    positions = {ip: raw.find(ip.encode()) for ip in arrival}
    assert all(p >= 0 for p in positions.values())
    by_position = [ip for ip, _ in sorted(positions.items(), key=lambda kv: kv[1])]
    assert by_position in (sorted(arrival), sorted(arrival, reverse=True))
    assert by_position != arrival


def test_a_log_to_the_second_is_folded_into_hours(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    with sqlite3.connect(path) as db:  # the layout of earlier versions
        db.execute("CREATE TABLE connections (at INTEGER NOT NULL, ip TEXT NOT NULL, PRIMARY KEY (at, ip)) WITHOUT ROWID")
        db.executemany("INSERT INTO connections VALUES (?, ?)", [(7200 + 3, "192.0.2.1"), (7200 + 9, "192.0.2.1"), (7200 + 5, "192.0.2.2"), (3 * HOUR, "192.0.2.1")])
    log = AccessLog(path, 72, clock=lambda: 4 * HOUR)
    assert log.rows() == [(2 * HOUR, "192.0.2.1"), (2 * HOUR, "192.0.2.2"), (3 * HOUR, "192.0.2.1")]
    log.close()
    assert _columns(path) == ["hour", "ip"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0  # VACUUM: no page of the old rows left


def test_purge_drops_hours_older_than_retention(open_log: OpenLog) -> None:
    now = 1_000_000 // HOUR * HOUR + 1800.0
    log = open_log(24, clock=lambda: now)
    for age_h in (0, 1, 23, 25, 100):
        log.record("192.0.2.1", now - age_h * HOUR)
    log.flush(final=True)
    assert log.purge() == 2
    assert [(now - h) // HOUR for h, _ in log.rows()] == [23, 1, 0]
    log.close()


def test_start_purges_leftovers_of_a_previous_run(open_log: OpenLog) -> None:
    old = open_log(72, clock=lambda: 0.0)
    old.record("192.0.2.1", 0)
    old.record("192.0.2.2", 100 * HOUR)
    old.close()
    later = open_log(72, clock=lambda: 100 * HOUR + 5)
    later.start()
    try:
        assert later.rows() == [(100 * HOUR, "192.0.2.2")]
    finally:
        later.close()


def test_background_thread_flushes_hours_that_are_over(open_log: OpenLog, stored: Callable[[], Any]) -> None:
    now = [20 * HOUR + 1.0]
    log = open_log(72, flush_interval=0.01, clock=lambda: now[0])
    log.start()
    try:
        log.record("198.51.100.7")
        now[0] = 21 * HOUR
        for _ in range(500):
            if stored():
                break
            time.sleep(0.01)
        assert stored() == [(20 * HOUR, "198.51.100.7")]
    finally:
        log.close()


def test_rotating_addresses_cannot_grow_memory_for_an_hour(open_log: OpenLog, stored: Callable[[], Any]) -> None:
    """Many distinct addresses within one hour (an IPv6 /64 rotated): once the bound is
    reached the hour in progress is written early, so memory stays bounded."""
    now = [20 * HOUR + 1.0]
    log = open_log(72, flush_interval=0.01, clock=lambda: now[0], max_pending=50)
    log.start()
    try:
        for i in range(200):
            log.record(f"2001:db8::{i:x}")
            if i % 20 == 19:
                for _ in range(500):
                    if log.pending_count() < 50:
                        break
                    time.sleep(0.01)
        for _ in range(500):
            if log.pending_count() < 50:
                break
            time.sleep(0.01)
        assert log.pending_count() < 50
        assert {h for h, _ in log.rows()} == {20 * HOUR}
    finally:
        log.close()
    # Nothing lost (a count popped by a flush in progress is in neither place for a moment:
    # counted after the final flush at close).
    assert len(stored()) == 200 and {h for h, _ in stored()} == {20 * HOUR}


@pytest.mark.parametrize("hours", [0, 73, -1, 1.5, True])
def test_retention_is_bounded(tmp_path: Path, hours: object) -> None:
    with pytest.raises(ValueError):
        AccessLog(tmp_path / "a.sqlite", hours)  # type: ignore[arg-type]


def test_client_ip_ignores_forwarding_headers() -> None:
    scope = {"type": "http", "client": ("203.0.113.9", 5555), "headers": [(b"x-forwarded-for", b"1.2.3.4")]}
    assert client_ip(scope) == "203.0.113.9"
    assert client_ip({"type": "http", "client": None}) is None


def test_middleware_records_requests_without_paths_or_bodies(tmp_path: Path) -> None:
    async def echo(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    import httpx

    from tests.support.net import serve_app

    log = AccessLog(tmp_path / "a.sqlite", 72)
    app = Starlette(routes=[Route("/secret/{value}", echo, methods=["GET", "POST"])])
    wrapped = AccessLogMiddleware(app, log)  # type: ignore[arg-type]
    with serve_app(wrapped) as url, httpx.Client(base_url=url) as client:  # type: ignore[arg-type]
        assert client.get("/secret/123456789").status_code == 200
        assert client.post("/secret/42", content=b"987654321").status_code == 200
    log.flush(final=True)
    rows = log.rows()
    assert {ip for _, ip in rows} == {"127.0.0.1"}
    log.close()
    raw = (tmp_path / "a.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("a.sqlite-*") if p.is_file()
    )
    for secret in (b"123456789", b"987654321", b"secret"):
        assert secret not in raw


# ---------------------------------------------------------------------------- real traffic


def test_real_traffic_leaves_no_values_in_logs_or_the_connection_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Registrations, lookups, proofs and authorizations through uvicorn: the log records of
    our modules (any level) and of everything at INFO, the captured stdout/stderr and the
    connection log hold none of the commitments, nullifiers or proof values."""
    import hashlib
    import logging

    from tests.support.registry import running_registry
    from zk.identity import Identity
    from zk.proof import generate_proof
    from zk.relay_scope import RelayScope, blob_message, epoch_at
    from zk.tree import MerkleProof

    caplog.set_level(logging.DEBUG)
    secrets: set[str] = set()
    with running_registry(tmp_path / "data") as reg, reg.client() as c:
        ids = [Identity(f"privacy-{i}") for i in range(3)]
        values = [i.commitment for i in ids]
        assert c.post("/v1/groups/0/members", json={"commitments": [str(v) for v in values]}).status_code == 202
        reg.wait_included(0, values)
        assert c.post("/v1/groups/0/members", json={"commitments": [str(values[0])]}).status_code == 409
        assert c.get(f"/v1/groups/0/members/0{values[1]}").status_code == 422
        merkle = MerkleProof.from_dict(c.get(f"/v1/groups/0/proofs/{values[0]}").json()["merkle_proof"])
        info = c.get("/v1/groups/0").json()
        digest = hashlib.sha256(b"private blob").digest()
        scope = RelayScope.of(reg.deployment, 0, epoch_at(reg.clock(), info["epoch_length"]), 7).encode()
        proof = generate_proof(ids[0], merkle, blob_message(digest), scope)
        body = {"group_id": 0, "proof": proof.to_dict(), "blob_digest": digest.hex()}
        assert c.post("/v1/authorize", json=body).status_code == 200
        assert c.post("/v1/authorize", json=body).status_code == 409
        assert c.post("/v1/authorize", json={**body, "blob_digest": "00" * 32}).status_code == 403
        assert c.get(f"/v1/roots/{proof.merkle_tree_root}").status_code == 200
        stranger = Identity("privacy-stranger").commitment
        assert c.get(f"/v1/groups/0/proofs/{stranger}").status_code == 404
        assert c.get("/metrics").status_code == 200
        secrets |= {str(v) for v in [*values, stranger]}
        secrets |= {f"{v:064x}" for v in [*values, stranger]}
        secrets |= {str(proof.nullifier), f"{proof.nullifier:064x}", str(proof.merkle_tree_root)}
        secrets |= {str(proof.message), str(proof.scope), digest.hex()}
        secrets |= {str(p) for p in proof.points}
        access_path = reg.settings.data_dir / "access.log.sqlite"
    # The app's lifespan closed the connection log (flushed) when uvicorn stopped.

    ours = ("registry", "zk", "uvicorn", "fastapi", "starlette")
    client_side = ("httpx", "httpcore")  # this test's own HTTP client, not the registry
    texts = []
    for record in caplog.records:
        top = record.name.split(".")[0]
        if top in client_side:
            continue
        if top in ours or record.levelno >= logging.INFO:
            texts.append(f"{record.name}: {record.getMessage()}")
            if record.exc_text:
                texts.append(record.exc_text)
    out, err = capfd.readouterr()
    texts += [out, err]
    log_text = "\n".join(texts)
    leaked = [line[:200] for line in log_text.splitlines() if any(s in line for s in secrets)]
    assert not leaked, f"values in the logs: {leaked[:3]}"

    assert _columns(access_path) == ["hour", "ip"]
    rows = AccessLog(access_path, 72).rows()
    assert rows and {ip for _, ip in rows} == {"127.0.0.1"}
    assert all(hour % 3600 == 0 for hour, _ in rows)
    raw = b"".join(p.read_bytes() for p in access_path.parent.glob("access.log.sqlite*"))
    assert not [s for s in secrets if s.encode() in raw]


def test_a_log_with_request_counts_loses_them(tmp_path: Path) -> None:
    """A log of the layout with counts (schema 1): the rows keep their hour and address, the
    counts are gone from the table and from the file's pages."""
    path = tmp_path / "a.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE connections (hour INTEGER NOT NULL, ip TEXT NOT NULL, requests INTEGER NOT NULL,"
            " PRIMARY KEY (hour, ip)) WITHOUT ROWID"
        )
        db.executemany("INSERT INTO connections VALUES (?, ?, ?)", [(0, "192.0.2.1", 987654), (HOUR, "192.0.2.2", 3)])
        db.execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
        db.execute(f"INSERT INTO {VERSION_TABLE} VALUES (1)")
        db.execute("PRAGMA user_version = 1")
    log = AccessLog(path, 72, clock=lambda: 2 * HOUR)
    assert log.rows() == [(0, "192.0.2.1"), (HOUR, "192.0.2.2")]
    log.close()
    assert _columns(path) == ["hour", "ip"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert (987654).to_bytes(3, "big") not in path.read_bytes()  # SQLite stores it as a 3-byte integer
