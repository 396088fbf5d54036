"""A registry on PostgreSQL whose database goes away: requests that need it answer 503
``database_unavailable`` with ``Retry-After`` (not a 500), health says ``database_down``, and everything works again once the database is back."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.registry.conftest import make_commitments
from tests.support.postgres import PostgresServer
from tests.support.registry import running_registry
from tests.support.wait import wait_until


def test_registration_while_the_database_is_down(tmp_path: Path, postgres: PostgresServer, postgres_url: str) -> None:
    with running_registry(tmp_path / "data", database_url=postgres_url) as reg:
        before, during, after = make_commitments(3, seed=97_000)
        with reg.client() as c:
            assert c.post("/v1/groups/0/members", json={"commitments": [str(before)]}).status_code == 202
            postgres.stop()
            try:
                r = c.post("/v1/groups/0/members", json={"commitments": [str(during)]})
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "database_unavailable"
                assert r.headers.get("retry-after") == "1"
                health = c.get("/v1/health").json()  # answers (the lease store's short wait)
                assert health["status"] == "degraded" and "database_down" in health["reasons"]
                assert health["database"] == "down"
            finally:
                postgres.start()

            def registered() -> bool:
                return c.post("/v1/groups/0/members", json={"commitments": [str(after)]}).status_code == 202

            wait_until(registered, 60, "registrations accepted again", interval=0.5)
        reg.wait_included(0, [before, after])
        # The background threads outlived the outage (the anchorer once died of it).
        alive = {t.name for t in threading.enumerate() if t.is_alive()}
        assert {"zkid-anchorer", "zkid-batcher", "zkid-indexer"} <= alive
        with reg.client() as c:
            assert c.get(f"/v1/groups/0/members/{during}").status_code == 404  # refused, so never stored
