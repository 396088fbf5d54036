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
import http.server
import hashlib
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.relay.app import ROUTE_THREADS, RelaySettings, create_relay_app
from registry.relay.evidence import KEY_FILE
from registry.relay.nullifier_authority import NullifierAuthorityClient, NullifierAuthorityUnavailable
from registry.relay.trust_list import TrustedRegistry, TrustList
from tests.registry.relay.support import send_body
from tests.support.net import serve_app
from tests.support.wait import wait_until
from zk.identity import Identity
from zk.proof import generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message
from zk.tree import LeanIMT

REF = RegistryRef(4242, "0x" + "ab" * 20)
BLOB = b"to a hanging region"
#: Sends of the hanging region: more than the worker threads of the whole relay (40).
SENDS = 48


class Trickler:
    """An HTTP server that answers each request with a status line and then one byte per
    0.2 s, until :meth:`release` (then it closes every connection)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.released = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.released.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            while not self.released.wait(0.2):
                conn.sendall(b"X")
        except OSError:
            pass
        finally:
            conn.close()

    def release(self) -> None:
        self.released.set()
        self.sock.close()


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[tuple[str, Trickler]]:
    trickler = Trickler()
    entry = TrustedRegistry(
        region="stuck", ref=REF, registry_url=trickler.url, rpc_url=trickler.url, auth="local", send_groups=(0,),
        operator="0x" + "cd" * 20,
    )
    (tmp_path / KEY_FILE).write_text("11" * 32 + "\n")
    settings = RelaySettings(data_dir=tmp_path, region="edge", trust_list=TrustList([entry]), probe_interval=3600.0)
    try:
        with serve_app(create_relay_app(settings)) as url:
            yield url, trickler
            trickler.release()
    finally:
        trickler.release()


def test_a_hanging_region_ties_up_only_its_own_threads(hanging: tuple[str, Trickler]) -> None:
    url, trickler = hanging
    who = Identity("hang")
    scope = RelayScope.of(REF, 0, 1, 0).encode()
    proof = generate_proof(who, LeanIMT(leaves=[who.commitment]).generate_proof(0), blob_message(hashlib.sha256(BLOB).digest()), scope)

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


class Garbage:
    """A ledger node answering every JSON-RPC call with the same unusable body."""

    def __init__(self, body: bytes) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "answer", [b"not json at all", b'{"jsonrpc":"2.0","id":0,"result":null}', b'{"jsonrpc":"2.0","id":0,"result":"0xzz"}']
)
def test_a_ledger_answering_garbage_is_unavailable_not_a_crash(tmp_path: Path, answer: bytes) -> None:
    """The relay answered a bare 500 ``internal`` (JSONDecodeError, TypeError, ValueError
    out of web3); it is an outage of that region: 503 with ``Retry-After``."""
    ledger = Garbage(answer)
    entry = TrustedRegistry(
        region="garbled", ref=REF, registry_url=ledger.url, rpc_url=ledger.url, auth="local", send_groups=(0,),
        operator="0x" + "cd" * 20,
    )
    (tmp_path / KEY_FILE).write_text("11" * 32 + "\n")
    settings = RelaySettings(data_dir=tmp_path, region="edge", trust_list=TrustList([entry]), probe_interval=3600.0)
    who = Identity("garbled")
    scope = RelayScope.of(REF, 0, 1, 0).encode()
    proof = generate_proof(who, LeanIMT(leaves=[who.commitment]).generate_proof(0), blob_message(hashlib.sha256(BLOB).digest()), scope)
    try:
        with serve_app(create_relay_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/v1/blobs", json=send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof))
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "authorization_unavailable" and "retry-after" in r.headers
            assert http.get("/v1/health").json()["upstreams"] == {"garbled": False}
    finally:
        ledger.close()


class Flood:
    """A registry answering every request 200 with a JSON-looking body of ``size`` bytes,
    written 64 KiB at a time; ``sent``: bytes the client took before it hung up."""

    def __init__(self, size: int) -> None:
        flood = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b'{"results":["' + b"a" * (65536 - 13)
                try:
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                        flood.sent += len(chunk)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.sent = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    entry = TrustedRegistry(region="flood", ref=REF, registry_url=flood.url, auth="registry")
    (tmp_path / KEY_FILE).write_text("11" * 32 + "\n")
    settings = RelaySettings(data_dir=tmp_path, region="edge", trust_list=TrustList([entry]), probe_interval=3600.0)
    who = Identity("flood")
    scope = RelayScope.of(REF, 0, 1, 0).encode()
    proof = generate_proof(who, LeanIMT(leaves=[who.commitment]).generate_proof(0), blob_message(hashlib.sha256(BLOB).digest()), scope)
    try:
        with serve_app(create_relay_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/v1/blobs", json=send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof))
    finally:
        flood.close()
    # Sent and unanswered: the registry may have claimed the slot (docs/relay.md).
    assert (r.status_code, r.json()["error"]["code"]) == (503, "authorization_unknown")
    assert flood.sent < FLOOD // 2
