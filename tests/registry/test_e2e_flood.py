"""A registration flood from one address against `zkid up` (a real subprocess, open group 0,
the default per-IP limits): the flood gets 429s once its bucket is spent, the outbox holds
no more than the limit, and a client on another address registers and is anchored
meanwhile. Linux routes all of 127.0.0.0/8 to lo, so a client bound to 127.0.0.2 is
another address to the registry."""

from __future__ import annotations

import collections
import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from registry.ledger.anvil import free_port
from registry.service.settings import Settings
from tests.registry.conftest import make_commitments
from tests.registry.test_e2e_faults import _wait, data_dir, start_up  # noqa: F401  (fixture)
from zk.identity import Identity

FLOOD_SECONDS = 20.0
FLOOD_MAX_REQUESTS = 4000  # bounded in count too (2 shared cores)
PER_REQUEST = 1000


def test_a_flood_from_one_address_is_limited_while_another_client_is_anchored(data_dir: Path) -> None:  # noqa: F811
    defaults = Settings(data_dir=data_dir, ip_limit_exempt=[])
    burst, per_minute = defaults.ip_burst_registration, defaults.ip_rate_registration
    # The test suite exempts loopback from the limits (tests/conftest.py): not here.
    up = start_up(data_dir, free_port(), free_port(), ZKID_IP_LIMIT_EXEMPT="")
    results: collections.Counter[int] = collections.Counter()
    started = time.monotonic()

    def flood() -> None:
        with httpx.Client(base_url=up.url, timeout=30) as http:  # from 127.0.0.1
            deadline = time.monotonic() + FLOOD_SECONDS
            n = 0
            while time.monotonic() < deadline and n < FLOOD_MAX_REQUESTS:
                body = json.dumps({"commitments": [str(v) for v in make_commitments(PER_REQUEST, seed=10**7 + n * PER_REQUEST)]})
                r = http.post("/v1/groups/0/members", content=body, headers={"content-type": "application/json"})
                results[r.status_code] += 1
                n += 1

    thread = threading.Thread(target=flood, daemon=True)
    legit = Identity("e2e-flood-legit").commitment
    try:
        thread.start()
        _wait(lambda: results[429] > 0 or not thread.is_alive(), 60, "the flood to be refused", up)
        assert results[429] > 0, dict(results)
        with httpx.Client(
            base_url=up.url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")
        ) as http:
            r = http.post("/v1/groups/0/members", json={"commitments": [str(legit)]})
            assert r.status_code == 202, r.text

            def anchored() -> bool:
                status = http.get(f"/v1/groups/0/members/{legit}").json().get("status")
                return status in ("included", "final")

            _wait(anchored, 120, "the legitimate registration to be anchored", up)
            thread.join(FLOOD_SECONDS + 60)
            assert not thread.is_alive()
            elapsed_minutes = (time.monotonic() - started) / 60
            metrics = http.get("/metrics").text
        # The flood: accepted up to its bucket, then refused (nothing else: no 5xx).
        assert set(results) <= {202, 429} and results[202] >= 1 and results[429] > 0, dict(results)
        limit = burst + per_minute * elapsed_minutes
        assert results[202] * PER_REQUEST <= limit
        refused = next(
            float(line.split()[-1]) for line in metrics.splitlines()
            if line.startswith('zkid_rate_limited_total{class="registration"}')
        )
        assert refused == results[429]
    finally:
        assert up.stop(signal.SIGINT) == 0
    # The outbox holds the flood's allowance and the legitimate registration, no more.
    db = sqlite3.connect(data_dir / "outbox.sqlite")
    try:
        (queued,) = db.execute("SELECT count(*) FROM registrations WHERE group_id = 0").fetchone()
        (mine,) = db.execute("SELECT count(*) FROM registrations WHERE commitment = ?", (str(legit),)).fetchone()
    finally:
        db.close()
    assert queued == results[202] * PER_REQUEST + 1 and queued <= limit + 1
    assert mine == 1
