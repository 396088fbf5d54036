"""Loopback networking for tests: free ports, readiness probes, uvicorn in a thread, and
stub HTTP upstreams (a handler class served by the standard library's server)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from registry.ledger.anvil import free_port

__all__ = ["QuietHandler", "StubServer", "accepts", "free_port", "healthy", "serve_app"]


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` accepts a TCP connection now (no HTTP request is made, so
    nothing counts against a rate limit)."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def healthy(url: str, timeout: float = 5.0) -> bool:
    """Whether ``url``'s ``/v1/health`` answers 200 now."""
    try:
        return httpx.get(f"{url}/v1/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class _ThreadServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test process keeps its handlers
        yield


@contextlib.contextmanager
def serve_app(app: Any, port: int = 0, *, sock: socket.socket | None = None, **options: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread of the test process, on a free loopback port
    (or ``port``: e.g. a service coming back where it was); yield its base URL.

    ``sock``: serve on this bound socket instead (e.g. a dual-stack IPv6 one), reached at
    127.0.0.1 all the same; ``options``: ``uvicorn.Config`` settings over the defaults here
    (e.g. ``http=`` a protocol class, ``lifespan="off"``)."""
    if sock is None:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
        # without it every response waits ~40 ms for a delayed ACK (`zkid up` sets it too).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    settings: dict[str, Any] = {
        "log_config": None, "access_log": False, "lifespan": "on", "timeout_graceful_shutdown": 2, **options
    }
    config = uvicorn.Config(app, **settings)
    server = _ThreadServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """The handler of a stub upstream: no access log on stderr, and a 200 JSON answer."""

    def log_message(self, *args: object) -> None:
        pass

    def send_json_headers(self, length: int) -> None:
        """The status line and headers of a 200 JSON answer of ``length`` bytes (the body
        is the caller's to write, e.g. in pieces)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def send_json(self, body: bytes) -> None:
        self.send_json_headers(len(body))
        self.wfile.write(body)


class StubServer:
    """``handler`` served on a free loopback port by a threading HTTP server in a daemon
    thread of the test process; ``url``, and :meth:`close` to stop it."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
