"""Hostile request bodies and forged proxy headers against ``zkid up`` as a real process.

- 100k-deep ``[[[[...`` (which overflowed the C stack once py_ecc had raised the recursion
  limit: SIGSEGV, nothing logged), duplicate keys and huge integers on every JSON route:
  a 4xx each time, and the process keeps serving.
- ``X-Forwarded-For`` from a client on the same host: the connection log keeps the real
  peer address unless the operator names the proxy (``ZKID_TRUSTED_PROXIES`` /
  ``--trusted-proxy``).
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

import httpx

from registry.ledger.anvil import free_port
from tests.registry.test_e2e_faults import TOKEN, data_dir, start_up  # noqa: F401 - data_dir is a fixture

DEEP = 100_000
JSON = {"Content-Type": "application/json"}
ROUTES = {
    "/v1/groups": {"Authorization": f"Bearer {TOKEN}"},
    "/v1/groups/0/members": {},
    "/v1/authorize": {},
    "/v1/evidence": {},
    "/v1/evidence/batch": {},
}


def _connection_ips(data_dir: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(data_dir / "access.log.sqlite")) as db:
        return {str(ip) for (ip,) in db.execute("SELECT ip FROM connections")}


def test_hostile_bodies_on_every_json_route_leave_the_registry_serving(data_dir: Path) -> None:  # noqa: F811
    up = start_up(data_dir, free_port(), free_port())
    try:
        with httpx.Client(base_url=up.url, timeout=60) as http:
            for path, auth in ROUTES.items():
                for raw in (
                    b"[" * DEEP,  # parsed where the route's limit allows it, else 413
                    b"[" * DEEP + b"]" * DEEP,
                    b"[" * 60_000,  # within every route's limit: reaches the parser
                    b'{"a":' * 12_000,
                    b'{"commitments": ["1"], "commitments": ["1"]}',
                    b'{"root_window": ' + b"9" * 5000 + b"}",
                ):
                    r = http.post(path, content=raw, headers={**auth, **JSON})
                    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
                    assert isinstance(r.json()["error"]["code"], str)
                    assert up.proc.poll() is None, f"zkid up died on {path}: {up.log.read_text()[-2000:]}"
            assert http.get("/v1/health").status_code == 200
            # A client on the same host claims another address: the log keeps the peer's.
            assert http.get("/v1/groups", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
    finally:
        assert up.stop(signal.SIGINT) == 0
    assert _connection_ips(data_dir) == {"127.0.0.1"}


def test_forwarded_for_is_believed_only_from_a_named_proxy(data_dir: Path) -> None:  # noqa: F811
    up = start_up(data_dir, free_port(), free_port(), ZKID_TRUSTED_PROXIES="127.0.0.1")
    try:
        r = httpx.get(f"{up.url}/v1/groups", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=60)
        assert r.status_code == 200
    finally:
        assert up.stop(signal.SIGINT) == 0
    assert "203.0.113.7" in _connection_ips(data_dir)
