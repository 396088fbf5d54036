"""Shared helpers of the evidence-log tests (signed records, a log in a temp dir, a
switchable loopback TCP relay standing for a ledger node that goes away and comes back).
No tests here."""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

from eth_account import Account

from registry.evidence.log import EvidenceLog, load_or_create_log_key
from registry.storage.database import open_store_database
from tests.support.net import free_port
from zk.evidence.record import EventType, EvidenceRecord, SignedRecord, sign_record

RELAY_KEY = hashlib.sha256(b"letro-zkid test relay").digest()
RELAY = Account.from_key(RELAY_KEY).address
CHAIN_ID = 31337


def make_records(n: int, start: int = 0, chain_id: int = CHAIN_ID) -> list[SignedRecord]:
    out = []
    for i in range(start, start + n):
        rec = EvidenceRecord(
            chain_id=chain_id,
            event=EventType.RELAY_ACCEPTANCE,
            event_time=1_700_000_000 + i,
            issuer=RELAY,
            blob_digest=hashlib.sha256(b"blob %d" % i).digest(),
            region="eu-west",
        )
        out.append(sign_record(rec, RELAY_KEY))
    return out


def open_log(data_dir: Path, origin: str = "letro-zkid/test/evidence", database_url: str | None = None) -> EvidenceLog:
    """The log of ``data_dir`` (its key file there); on SQLite (``database_url`` None) or
    the PostgreSQL database at ``database_url``."""
    signer = load_or_create_log_key(data_dir, origin)
    return EvidenceLog(open_store_database(database_url, data_dir, "evidence.sqlite", durable=True), signer, origin)


class Relay:
    """A TCP relay ``127.0.0.1:port -> target`` that can be cut and restored on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not
            # (the kernel socket would keep listening).
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


class CountingRpcProxy:
    """A loopback HTTP proxy in front of a JSON-RPC node that counts what passes through:
    ``calls[(method, to, selector)]`` (``to``/``selector`` only for ``eth_call``)."""

    def __init__(self, target_url: str) -> None:
        import collections
        import http.server

        import httpx

        self.target_url = target_url
        self.calls: collections.Counter[tuple[str, str | None, str | None]] = collections.Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                proxy._count(body)
                upstream = httpx.post(proxy.target_url, content=body, headers={"content-type": "application/json"},
                                      timeout=60)
                self.send_response(upstream.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _count(self, body: bytes) -> None:
        import json

        try:
            data = json.loads(body)
        except ValueError:
            return
        with self._lock:
            for request in data if isinstance(data, list) else [data]:
                method = request.get("method")
                to = selector = None
                if method == "eth_call":
                    call = request["params"][0]
                    to = str(call.get("to", "")).lower()
                    selector = str(call.get("data") or call.get("input") or "")[:10]
                self.calls[(method, to, selector)] += 1

    def count(self, method: str, to: str | None = None, selector: str | None = None) -> int:
        with self._lock:
            return sum(n for (m, t, s), n in self.calls.items()
                       if m == method and (to is None or t == to.lower()) and (selector is None or s == selector))

    def __enter__(self) -> CountingRpcProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
