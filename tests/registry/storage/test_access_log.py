"""The connection log (registry/storage/access_log.py): only (time, IP), bounded retention."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from registry.storage.access_log import AccessLog, AccessLogMiddleware, client_ip

HOUR = 3600


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables == ["connections"]
        return [r[1] for r in db.execute("PRAGMA table_info(connections)")]


def test_stores_only_time_and_ip(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access.log.sqlite", 72)
    log.record("127.0.0.1", 1000.7)
    log.record("127.0.0.1", 1000.2)  # same second: one row
    log.record("10.0.0.2", 1000.5)
    log.record(None, 1001)
    assert log.flush() == 3
    assert log.rows() == [(1000, "10.0.0.2"), (1000, "127.0.0.1"), (1001, "unknown")]
    log.close()
    assert _columns(tmp_path / "access.log.sqlite") == ["at", "ip"]


def test_purge_drops_rows_older_than_retention(tmp_path: Path) -> None:
    now = 1_000_000.0
    log = AccessLog(tmp_path / "a.sqlite", 24, clock=lambda: now)
    for age_h in (0, 1, 23, 25, 100):
        log.record("192.0.2.1", now - age_h * HOUR)
    log.flush()
    assert log.purge() == 2
    assert [now - at for at, _ in log.rows()] == [23 * HOUR, 1 * HOUR, 0]
    log.close()


def test_start_purges_leftovers_of_a_previous_run(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    old = AccessLog(path, 72, clock=lambda: 0.0)
    old.record("192.0.2.1", 0)
    old.record("192.0.2.2", 100 * HOUR)
    old.close()
    later = AccessLog(path, 72, clock=lambda: 100 * HOUR + 5)
    later.start()
    try:
        assert later.rows() == [(100 * HOUR, "192.0.2.2")]
    finally:
        later.close()


def test_background_thread_flushes(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "a.sqlite", 72, flush_interval=0.01)
    log.start()
    try:
        log.record("198.51.100.7")
        for _ in range(500):
            if log.rows():
                break
            time.sleep(0.01)
        assert [ip for _, ip in log.rows()] == ["198.51.100.7"]
    finally:
        log.close()


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

    from tests.registry.http_support import serve_app

    log = AccessLog(tmp_path / "a.sqlite", 72)
    app = Starlette(routes=[Route("/secret/{value}", echo, methods=["GET", "POST"])])
    wrapped = AccessLogMiddleware(app, log)  # type: ignore[arg-type]
    with serve_app(wrapped) as url, httpx.Client(base_url=url) as client:  # type: ignore[arg-type]
        assert client.get("/secret/123456789").status_code == 200
        assert client.post("/secret/42", content=b"987654321").status_code == 200
    log.flush()
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

    import httpx

    from tests.registry.http_support import running_registry
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
        merkle = MerkleProof.from_json(c.get(f"/v1/groups/0/proofs/{values[0]}").json()["merkle_proof"])
        info = c.get("/v1/groups/0").json()
        digest = hashlib.sha256(b"private blob").digest()
        scope = RelayScope(0, epoch_at(reg.clock(), info["epoch_length"]), 7).encode()
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

    assert _columns(access_path) == ["at", "ip"]
    rows = AccessLog(access_path, 72).rows()
    assert rows and {ip for _, ip in rows} == {"127.0.0.1"}
    raw = b"".join(p.read_bytes() for p in access_path.parent.glob("access.log.sqlite*"))
    assert not [s for s in secrets if s.encode() in raw]
