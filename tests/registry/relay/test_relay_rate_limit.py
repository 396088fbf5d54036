"""The relay's per-IP limits (registry/web/rate_limit.py, as the registry's): a real relay on
loopback, clients bound to distinct loopback addresses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from registry.relay.app import RelaySettings, relay_limiter
from tests.registry.relay.support import running_relay

BODY = {"mailbox": "00" * 32, "pickup_hash": "11" * 32, "blob": "***", "group_id": 0, "proof": {}}


def client(url: str, address: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def test_a_flooding_address_is_limited_and_others_are_not(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    with running_relay(tmp_path / "relay", anvil.rpc_url, deployed.manifest, rate_limit=5, rate_window=3600) as (
        url, relay, app
    ), client(url, "127.0.0.2") as flood, client(url, "127.0.0.3") as other:
        # Sends: 5 at once (these bodies are refused as malformed: they still count).
        assert [flood.post("/v1/blobs", json=BODY).status_code for _ in range(5)] == [422] * 5
        refused = [flood.post("/v1/blobs", json=BODY) for _ in range(20)]
        assert {r.status_code for r in refused} == {429}
        assert refused[0].json()["error"]["code"] == "rate_limited"
        assert int(refused[0].headers["Retry-After"]) >= 1
        # The flooder's reads are their own bucket (a mailbox can still be picked up)...
        assert flood.get("/v1/health").status_code == 200
        # ...and another address sends as usual.
        assert other.post("/v1/blobs", json=BODY).status_code == 422
        # The limiter keeps addresses only; and its state lives no longer than the connection log's rows.
        limiter = app.state.rate_limiter
        assert limiter.keys() == {"127.0.0.2", "127.0.0.3"}
        assert limiter.max_idle == relay.settings.access_log_hours * 3600
        assert limiter.refused["send"] == 20


def test_the_rate_is_per_window_with_a_burst_of_the_limit(tmp_path: Path) -> None:
    settings = RelaySettings(data_dir=tmp_path, rpc_url="http://127.0.0.1:1", rate_limit=120, rate_window=60.0)
    limiter = relay_limiter(settings)
    assert {c: (lim.per_minute, lim.burst) for c, lim in limiter.limits.items()} == {
        "send": (120.0, 120), "reads": (120.0, 120)
    }
