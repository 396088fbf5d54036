"""Whole-request deadlines of a relay's upstream calls (registry/relay/deadline.py).

A read timeout bounds only the time between bytes: an upstream that trickles one byte
at a time (tests/registry/relay/support.py ``Trickler``, a real socket server) held a
probe or a send for as long as it trickled. With deadlines:

- each health probe ends within ``PROBE_TIMEOUT`` (down) and runs beside the others: a
  trickling region no longer leaves every region's ``upstreams`` unanswered;
- a send to a trickling region or registry is refused 503 within ``UPSTREAM_DEADLINE``
  (``authorization_unknown`` where the registry may have claimed the slot);
- a single-registry relay whose registry trickles goes on answering health and pickups.

The timeouts of the test clients only detect a hang (the old relay never answered)."""

from __future__ import annotations

import concurrent.futures
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.client._http import RegistryClientError, request
from registry.ledger.errors import LedgerUnavailable
from registry.relay.app import ROUTE_THREADS, RelaySettings, create_relay_app
from registry.relay.deadline import deadline, deadline_client, ledger_web3
from registry.relay.nullifier_authority import (
    AuthorityNullifierStore,
    NullifierAuthorityClient,
    NullifierAuthorityUnavailable,
)
from registry.relay.trust_list import TrustedRegistry
from registry.service.authorization import SqlNullifierStore
from tests.registry.relay.support import Trickler, blob_proof, federated_settings, local_entry, send_body
from tests.support.net import QuietHandler, StubServer, serve_app
from tests.support.wait import wait_until
from zk.relay_scope import RegistryRef

STUCK = RegistryRef(4242, "0x" + "ab" * 20)
FINE = RegistryRef(4243, "0x" + "ef" * 20)
BLOB = b"to a trickling upstream"


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    t = Trickler()
    yield t
    t.release()


class Healthy(QuietHandler):
    """A registry that answers every GET 200 (what a health probe asks)."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_json(b'{"status":"ok"}')


def _stuck_entry(url: str, auth: str = "local") -> TrustedRegistry:
    if auth == "registry":
        return TrustedRegistry(region="stuck", ref=STUCK, registry_url=url, auth="registry")
    return local_entry("stuck", STUCK, url)


def test_a_trickling_answer_is_cut_off_at_the_deadline(trickler: Trickler) -> None:
    with deadline_client(trickler.url, 30.0) as http, deadline(0.5), pytest.raises(RegistryClientError) as caught:
        request(http, "GET", "/v1/health", max_bytes=1024)
    assert (caught.value.code, caught.value.sent) == ("no_answer", True)  # sent: it may have been acted on
    w3 = ledger_web3(trickler.url, 30.0)
    with deadline(0.5), pytest.raises(LedgerUnavailable):
        w3.eth.block_number


def test_a_claim_cut_off_by_the_deadline_is_unavailable_and_released(trickler: Trickler, tmp_path: Path) -> None:
    """Never accepted on this relay's word: 503, and the local claim is given back (a claim
    is idempotent for its relay: the resend asks the registry again)."""
    local = SqlNullifierStore(tmp_path / "n.sqlite")
    client = NullifierAuthorityClient(trickler.url, b"\x11" * 32, STUCK, timeout=30.0)
    store = AuthorityNullifierStore(local, client)
    try:
        with deadline(0.5), pytest.raises(NullifierAuthorityUnavailable):
            store.claim(0, 7, 1)
        assert local.claim(0, 7, 1)  # released: not spent here
    finally:
        client.close()
        local.close()


def test_a_trickling_region_leaves_the_others_health_current(
    trickler: Trickler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probes ran one after another in one thread: the stuck region (first) held it
    for good, and no region's status was ever known."""
    monkeypatch.setattr("registry.relay.app.PROBE_TIMEOUT", 0.5)
    healthy = StubServer(Healthy)
    fine = TrustedRegistry(region="fine", ref=FINE, registry_url=healthy.url, auth="registry")
    settings = federated_settings(tmp_path, _stuck_entry(trickler.url), fine, probe_interval=0.2)
    try:
        with serve_app(create_relay_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as http:
            want = {"stuck": False, "fine": True}
            wait_until(lambda: http.get("/v1/health").json()["upstreams"] == want, 30, "every region's status")
            assert "region_unreachable" in http.get("/v1/health").json()["reasons"]
    finally:
        healthy.close()


@pytest.mark.parametrize(
    ("auth", "code"),
    [("local", "authorization_unavailable"), ("registry", "authorization_unknown")],
)
def test_a_send_to_a_trickling_region_is_refused_at_the_deadline(
    trickler: Trickler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str, code: str
) -> None:
    """Local: the ledger never answered, nothing was claimed (Retry-After). Registry: the
    proof went out and no answer came back: the registry may have claimed the slot."""
    monkeypatch.setattr("registry.relay.app.UPSTREAM_DEADLINE", 1.0)
    settings = federated_settings(tmp_path, _stuck_entry(trickler.url, auth))
    proof = blob_proof("deadline", STUCK, BLOB)
    with serve_app(create_relay_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("/v1/blobs", json=send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof))
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == code
    assert ("retry-after" in r.headers) == (code == "authorization_unavailable")


def test_a_single_registry_that_trickles_stalls_no_pickup_nor_health(
    trickler: Trickler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single-registry mode had no thread limit of its own: sends to a trickling registry
    held every worker thread, and health and pickups waited with them."""
    monkeypatch.setattr("registry.relay.app.PROBE_TIMEOUT", 0.5)
    settings = RelaySettings(data_dir=tmp_path, auth_mode="registry", registry_url=trickler.url, probe_interval=0.2)
    proof = blob_proof("deadline", STUCK, BLOB)
    sends = 48  # more than the relay's worker threads (40)

    def send() -> int:
        with httpx.Client(base_url=url, timeout=120) as client:
            return client.post("/v1/blobs", json=send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof)).status_code

    with serve_app(create_relay_app(settings)) as url, concurrent.futures.ThreadPoolExecutor(sends) as pool:
        futures = [pool.submit(send) for _ in range(sends)]
        wait_until(lambda: trickler.connections >= ROUTE_THREADS, 60, "the sends to reach the registry")
        with httpx.Client(base_url=url, timeout=30) as http:
            mailbox = http.get(f"/v1/mailboxes/{'00' * 32}", headers={"X-Pickup-Capability": "11" * 16})
            assert mailbox.status_code == 200 and mailbox.json() == {"blobs": []}
            wait_until(
                lambda: "registry_unreachable" in http.get("/v1/health").json()["reasons"], 30, "the probe to find it down"
            )
        trickler.release()
        statuses = [f.result() for f in futures]
    assert set(statuses) == {503}
