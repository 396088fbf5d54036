"""A federated relay whose trusted region hangs, garbles or floods its answers.

Hangs (registry/relay/app.py ``ROUTE_THREADS``):

A trusted region's ledger or registry that accepts connections and then answers one byte
at a time (a broken proxy, or a hostile upstream) holds each send of that region in a
worker thread for as long as it likes: a read timeout counts the time between bytes.
Sends only need a scope that names the region to get that far (the ledger is asked
before any proof is verified). Such sends must tie up only their region's threads: the
relay's health, pickups and other regions go on answering.

Garbage from a ledger is an outage (503), not a crash; an answer larger than any a
registry gives is cut off (``ANSWER_LIMIT``), not read into memory."""

from __future__ import annotations

import concurrent.futures
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.relay.app import ROUTE_THREADS, create_relay_app
from registry.relay.nullifier_authority import NullifierAuthorityClient, NullifierAuthorityUnavailable
from registry.relay.trust_list import TrustedRegistry
from tests.registry.relay.support import Trickler, blob_proof, federated_settings, local_entry, send_body
from tests.support.net import QuietHandler, StubServer, serve_app
from tests.support.wait import wait_until
from zk.relay_scope import RegistryRef

REF = RegistryRef(4242, "0x" + "ab" * 20)
BLOB = b"to a hanging region"
#: Sends of the hanging region: more than the worker threads of the whole relay (40).
SENDS = 48


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[tuple[str, Trickler]]:
    trickler = Trickler()
    settings = federated_settings(tmp_path, local_entry("stuck", REF, trickler.url))
    try:
        with serve_app(create_relay_app(settings)) as url:
            yield url, trickler
            trickler.release()
    finally:
        trickler.release()


def test_a_hanging_region_ties_up_only_its_own_threads(hanging: tuple[str, Trickler]) -> None:
    url, trickler = hanging
    proof = blob_proof("hang", REF, BLOB)

    def send() -> int:
        body = send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof)
        with httpx.Client(base_url=url, timeout=120) as http:
            return http.post("/v1/blobs", json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(SENDS) as pool:
        sends = [pool.submit(send) for _ in range(SENDS)]
        # The region's threads are all stuck on the trickling ledger (one probe too, at start).
        wait_until(lambda: trickler.connections >= ROUTE_THREADS, 60, "the region's sends to reach its ledger")
        # The rest of the relay answers (the timeout only detects a hang: the old relay,
        # with every worker thread stuck, answered nothing before the region was released).
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/v1/health").status_code == 200
            mailbox = http.get(f"/v1/mailboxes/{'00' * 32}", headers={"X-Pickup-Capability": "11" * 16})
            assert mailbox.status_code == 200 and mailbox.json() == {"blobs": []}
        # At most the region's own threads ever reached its ledger (+1: the start-up probe).
        assert trickler.connections <= ROUTE_THREADS + 1
        trickler.release()
        statuses = [f.result() for f in sends]
    # Sends of the stuck region are refused as unavailable (nothing accepted on no answer),
    # whether they reached the ledger or waited for a thread of their region.
    assert set(statuses) == {503}


class Garbage(StubServer):
    """A ledger node answering every JSON-RPC call with the same unusable body."""

    def __init__(self, body: bytes) -> None:
        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_json(body)

        super().__init__(Handler)


@pytest.mark.parametrize(
    "answer", [b"not json at all", b'{"jsonrpc":"2.0","id":0,"result":null}', b'{"jsonrpc":"2.0","id":0,"result":"0xzz"}']
)
def test_a_ledger_answering_garbage_is_unavailable_not_a_crash(tmp_path: Path, answer: bytes) -> None:
    """The relay answered a bare 500 ``internal`` (JSONDecodeError, TypeError, ValueError
    out of web3); it is an outage of that region: 503 with ``Retry-After``."""
    ledger = Garbage(answer)
    settings = federated_settings(tmp_path, local_entry("garbled", REF, ledger.url))
    proof = blob_proof("garbled", REF, BLOB)
    try:
        with serve_app(create_relay_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/v1/blobs", json=send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof))
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "authorization_unavailable" and "retry-after" in r.headers
            assert http.get("/v1/health").json()["upstreams"] == {"garbled": False}
    finally:
        ledger.close()


class Flood(StubServer):
    """A registry answering every request 200 with a JSON-looking body of ``size`` bytes,
    written 64 KiB at a time; ``sent``: bytes the client took before it hung up."""

    def __init__(self, size: int) -> None:
        flood = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_json_headers(size)
                chunk = b'{"results":["' + b"a" * (65536 - 13)
                try:
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                        flood.sent += len(chunk)
                except OSError:
                    pass

        self.sent = 0
        super().__init__(Handler)


#: The flood: far more than any answer, and more than loopback socket buffers hold.
FLOOD = 256 * 1024 * 1024


def test_a_registry_flooding_a_claim_answer_is_cut_off() -> None:
    """The relay read a registry's whole answer into memory, however large."""
    flood = Flood(FLOOD)
    client = NullifierAuthorityClient(flood.url, b"\x11" * 32, REF, timeout=30)
    try:
        with pytest.raises(NullifierAuthorityUnavailable):
            client.claim(0, 1, 1)
    finally:
        client.close()
        flood.close()
    assert flood.sent < FLOOD // 2


def test_a_registry_flooding_an_authorization_answer_is_cut_off(tmp_path: Path) -> None:
    flood = Flood(FLOOD)
    settings = federated_settings(tmp_path, TrustedRegistry(region="flood", ref=REF, registry_url=flood.url, auth="registry"))
    proof = blob_proof("flood", REF, BLOB)
    try:
        with serve_app(create_relay_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/v1/blobs", json=send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof))
    finally:
        flood.close()
    # Sent and unanswered: the registry may have claimed the slot (docs/relay.md).
    assert (r.status_code, r.json()["error"]["code"]) == (503, "authorization_unknown")
    assert flood.sent < FLOOD // 2
