"""Per-client-IP limits (registry/web/rate_limit.py): the token buckets on their own, then on a
real registry (Anvil, uvicorn on loopback) with clients bound to distinct loopback
addresses (Linux routes all of 127.0.0.0/8 to lo), and the shipped alerting rules checked
against the metrics that registry exports."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from registry.web.rate_limit import IpRateLimiter, RouteLimit, client_key, registry_route_class, retry_after
from registry.service.settings import Settings
from tests.registry.conftest import make_commitments
from tests.support.clock import FakeClock
from tests.support.registry import OPERATOR_TOKEN, Registry, running_registry

ROOT = Path(__file__).resolve().parents[3]
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def limiter(clock: FakeClock, **kwargs: object) -> IpRateLimiter:
    limits = {"registration": RouteLimit(6.0, 10), "reads": RouteLimit(60.0, 3)}
    return IpRateLimiter(limits, clock=clock, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the buckets


def test_a_bucket_passes_its_burst_then_refuses_with_the_exact_wait() -> None:
    clock = FakeClock(1000.0)
    lim = limiter(clock)
    assert [lim.take("reads", "192.0.2.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.take("reads", "192.0.2.1")
    assert wait == pytest.approx(1.0)  # 60 a minute: one token a second
    assert retry_after(wait) == "1" and retry_after(0.2) == "1" and retry_after(2.01) == "3"
    clock.advance(1.0)
    assert lim.take("reads", "192.0.2.1") == 0.0
    assert lim.take("reads", "192.0.2.1") > 0
    assert lim.refused["reads"] == 2 and lim.refused["registration"] == 0


def test_buckets_are_per_address_and_per_class() -> None:
    clock = FakeClock(0.0)
    lim = limiter(clock)
    for _ in range(3):
        lim.take("reads", "192.0.2.1")
    assert lim.take("reads", "192.0.2.1") > 0
    assert lim.take("reads", "192.0.2.2") == 0.0  # another client
    assert lim.take("registration", "192.0.2.1") == 0.0  # another class


def test_registrations_are_counted_per_commitment_all_or_nothing() -> None:
    clock = FakeClock(0.0)
    lim = limiter(clock)
    assert lim.take("registration", "192.0.2.1", 1) == 0.0  # the request's token (middleware)
    assert lim.take("registration", "192.0.2.1", 6, paid=1) == 0.0  # 6 commitments: 5 more
    wait = lim.take("registration", "192.0.2.1", 5)  # 4 left: nothing is taken
    assert wait == pytest.approx(10.0)  # one token lacks, 6 a minute
    assert lim.take("registration", "192.0.2.1", 4) == 0.0
    assert lim.take("registration", "192.0.2.9", 11) == math.inf  # more than a bucket: never


def test_ipv6_clients_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
    clock = FakeClock(0.0)
    lim = limiter(clock)
    for i in range(3):
        assert lim.take("reads", f"2001:db8:1:2::{i + 1}") == 0.0
    assert lim.take("reads", "2001:db8:1:2::ffff") > 0  # rotating within the /64 does not help


def test_exempt_networks_are_not_limited() -> None:
    clock = FakeClock(0.0)
    lim = limiter(clock, exempt=["10.0.0.0/8", "2001:db8::/32"])
    assert all(lim.take("reads", "10.1.2.3") == 0.0 for _ in range(20))
    assert lim.take("registration", "2001:db8::5", 1000) == 0.0
    assert lim.entries() == {"registration": 0, "reads": 0}


def test_state_holds_addresses_only_and_expires() -> None:
    clock = FakeClock(0.0)
    lim = IpRateLimiter({"reads": RouteLimit(60.0, 3), "slow": RouteLimit(0.001, 5)}, max_idle=3600, clock=clock)
    lim.take("reads", "192.0.2.1")
    lim.take("slow", "192.0.2.2")
    assert lim.keys() == {"192.0.2.1", "192.0.2.2"}
    clock.advance(1.0)  # the reads bucket is full again: forgotten
    assert lim.sweep() == 1 and lim.keys() == {"192.0.2.2"}
    clock.advance(3600.0)  # the slow one is far from full, but no entry outlives max_idle
    assert lim.sweep() == 1 and lim.keys() == set()
    # The sweep also runs by itself as requests come.
    lim.take("slow", "192.0.2.3")
    clock.advance(3600.0)
    lim.take("reads", "192.0.2.4")
    assert lim.keys() == {"192.0.2.4"}


def test_memory_is_bounded() -> None:
    clock = FakeClock(0.0)
    lim = IpRateLimiter({"reads": RouteLimit(1.0, 2)}, max_keys=100, clock=clock)
    for i in range(1000):
        lim.take("reads", f"10.0.{i // 256}.{i % 256}")
    assert lim.entries() == {"reads": 100}
    assert "10.0.3.231" in lim.keys()  # the most recent stay


def test_the_limiter_state_does_not_outlive_the_connection_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, access_log_hours=5)
    from registry.web.rate_limit import registry_limiter

    assert registry_limiter(settings).max_idle == 5 * 3600


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/groups/0/members", "registration"),
        ("POST", "/v1/groups/12/members", "registration"),
        ("GET", "/v1/groups/0/members/5", "reads"),
        ("POST", "/v1/authorize", "authorization"),
        ("POST", "/v1/evidence/batch", "evidence"),
        ("GET", "/v1/evidence/relays", "evidence"),
        ("POST", "/v1/groups", "reads"),
        ("GET", "/metrics", "reads"),
    ],
)
def test_route_classes(method: str, path: str, expected: str) -> None:
    assert registry_route_class({"type": "http", "method": method, "path": path}) == expected


# ---------------------------------------------------------------------------- a real registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    data = tmp_path_factory.mktemp("ratelimit")
    with running_registry(
        Path(data),
        ip_limit_exempt=[],  # the test suite exempts loopback (tests/conftest.py): not here
        ip_rate_registration=0.001, ip_burst_registration=10,
        ip_rate_authorization=0.001, ip_burst_authorization=2,
        ip_rate_reads=0.001, ip_burst_reads=40,
        ip_rate_evidence=0.001, ip_burst_evidence=2,
    ) as reg:
        yield reg


def client(reg: Registry, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (a loopback address of its own)."""
    return httpx.Client(base_url=reg.url, timeout=60, transport=httpx.HTTPTransport(local_address=address))


def register(http: httpx.Client, values: list[int], headers: dict[str, str] | None = None) -> httpx.Response:
    return http.post("/v1/groups/0/members", json={"commitments": [str(v) for v in values]}, headers=headers)


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def scrape(http: httpx.Client) -> dict[str, float]:
    """Samples of /metrics, as ``name{labels}`` -> value."""
    text = http.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_registration_is_limited_per_commitment_per_address(registry: Registry) -> None:
    values = make_commitments(40, seed=91_000)
    with client(registry, "127.0.0.2") as http, client(registry, "127.0.0.3") as other:
        assert register(http, values[:6]).status_code == 202  # 6 of 10
        r = register(http, values[6:11])  # 5 more: 4 left
        assert error(r) == (429, "rate_limited") and int(r.headers["Retry-After"]) >= 1
        # Nothing of a refused request is queued.
        assert http.get(f"/v1/groups/0/members/{values[6]}").status_code == 404
        assert error(register(http, values[11:22])) == (413, "too_large")  # more than a bucket
        # Its reads are another bucket; another address has its own buckets.
        assert http.get("/v1/groups/0").status_code == 200
        assert register(other, values[22:30]).status_code == 202
        # The operator token is not limited (an account service writing a group).
        assert register(http, values[30:40], AUTH).status_code == 202
    assert registry.app.state.rate_limiter.keys() <= {"127.0.0.2", "127.0.0.3", "127.0.0.1"}


def test_every_route_class_answers_429_with_retry_after(registry: Registry) -> None:
    with client(registry, "127.0.0.4") as http:
        # Authorization: 2 at once (these are schema errors, they still count).
        assert [http.post("/v1/authorize", json={}).status_code for _ in range(2)] == [422, 422]
        r = http.post("/v1/authorize", json={})
        assert error(r) == (429, "rate_limited") and int(r.headers["Retry-After"]) >= 1
        # Evidence: 2 at once.
        assert [http.get("/v1/evidence/relays").status_code for _ in range(2)] == [200, 200]
        assert error(http.get("/v1/evidence/relays"))[0] == 429
        # Reads: 40 at once; a refused registration body is drained, the connection stays usable.
        codes = [http.get("/v1/health").status_code for _ in range(41)]
        assert codes[:40] == [200] * 40 and codes[40] == 429
        big = {"commitments": [str(v) for v in make_commitments(1000, seed=92_000)]}
        for _ in range(10):
            http.post("/v1/groups/0/members", json=big)  # 1000 > 10: 413, then 429s
        assert error(http.post("/v1/groups/0/members", json=big)) == (429, "rate_limited")


def test_metrics_show_refusals_429s_and_accepted_registrations(registry: Registry) -> None:
    with client(registry, "127.0.0.5") as http:
        before = scrape(http)
        values = make_commitments(3, seed=93_000)
        assert register(http, values).status_code == 202
        assert register(http, values).status_code == 409  # duplicate
        for _ in range(3):
            http.post("/v1/authorize", json={})
        after = scrape(http)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("zkid_registrations_accepted_total{}") == 3
    assert delta('zkid_http_refusals_total{code="duplicate",route="/v1/groups/{group_id}/members"}') == 1
    assert delta('zkid_http_refusals_total{code="malformed",route="/v1/authorize"}') == 2
    assert delta('zkid_http_refusals_total{code="rate_limited",route="unmatched"}') == 1
    assert delta('zkid_rate_limited_total{class="authorization"}') == 1
    assert after['zkid_batcher_spent_wei_last_hour{}'] >= 0
    assert after['zkid_batcher_spend_limit_wei_per_hour{}'] == registry.settings.spend_per_hour
    # No label holds an address or a value.
    for key in after:
        assert "127.0.0" not in key and str(values[0]) not in key


def test_shipped_alert_rules_use_only_exported_metrics(registry: Registry) -> None:
    rules = yaml.safe_load((ROOT / "docs" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs and all(rule.get("alert") for group in rules["groups"] for rule in group["rules"])
    used = {name for expr in exprs for name in re.findall(r"\bzkid_[a-z0-9_]+", expr)}
    with httpx.Client(base_url=registry.url, timeout=60, headers=AUTH) as http:
        text = http.get("/metrics").text
    exported = set()
    for family in text_string_to_metric_families(text):
        exported.add(family.name)
        exported.update(s.name for s in family.samples)
        if family.type == "counter":
            exported.add(family.name + "_total")  # a labelled counter without samples yet
    assert used and used <= exported, sorted(used - exported)
    reasons = set(re.findall(r'reason=~?"([^"]+)"', " ".join(exprs)))
    assert any("batcher_fee_above_ceiling" in r for r in reasons)
    assert any("batcher_budget_exhausted" in r for r in reasons)
