"""Connection limits below the app (registry/web/connections.py), on a real uvicorn
server on loopback with real sockets: slow headers are cut, a client cannot hold more
than its share of connections, trusted proxies are exempt, accept errors do not flood
the log."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from registry.web import connections
from registry.web.connections import AcceptErrorFilter, protocol_class
from tests.support.net import serve_app
from tests.support.wait import wait_until


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.contextmanager
def _server(trusted: tuple[str, ...] = ()) -> Iterator[tuple[int, Any]]:
    """The limits' protocol class of uvicorn (as ``zkid up`` and ``zkid relay`` run it)
    serving ``_app`` on a free loopback port; yields the port and the class (its counts)."""
    proto = protocol_class(trusted)
    with serve_app(_app, http=proto, lifespan="off", timeout_keep_alive=30) as url:
        yield _port(url), proto


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _get(s: socket.socket) -> bytes:
    return _get_with(s, b"")


def _get_with(s: socket.socket, headers: bytes) -> bytes:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    data = b""
    while not data.endswith(b"ok"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_headers_are_cut_and_whole_requests_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "HEADER_TIMEOUT", 0.5)
    with _server() as (port, _):
        trickle = socket.create_connection(("127.0.0.1", port))
        idle = socket.create_connection(("127.0.0.1", port))  # says nothing at all
        with trickle, idle:
            trickle.sendall(b"GET / HTTP/1.1\r\nHo")
            assert _closed_by_server(trickle, 10) and _closed_by_server(idle, 10)
        kept = socket.create_connection(("127.0.0.1", port))
        with kept:
            # A kept-alive connection is served again and again, past the header timeout.
            for _ in range(3):
                assert _get(kept).startswith(b"HTTP/1.1 200")
                time.sleep(0.3)
            # ...and its next request's headers have their own deadline.
            kept.sendall(b"GET / HT")
            assert _closed_by_server(kept, 10)


def test_a_client_holds_at_most_its_share_of_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "MAX_CONNECTIONS_PER_PEER", 5)
    with _server() as (port, proto):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            wait_until(lambda: proto.open_per_peer.get("127.0.0.1") == 5, 10, "five connections counted")
            extra = socket.create_connection(("127.0.0.1", port))
            with extra:
                assert _closed_by_server(extra, 10)  # the sixth: closed at once
            assert _get(held[0]).startswith(b"HTTP/1.1 200")  # the five are served
            held.pop().close()
            wait_until(lambda: proto.open_per_peer.get("127.0.0.1") == 4, 10, "a connection released")
            with socket.create_connection(("127.0.0.1", port)) as again:
                assert _get(again).startswith(b"HTTP/1.1 200")
        finally:
            for s in held:
                s.close()
        wait_until(lambda: proto.open_per_peer == {}, 10, "every count released")


def test_trusted_proxies_are_not_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "MAX_CONNECTIONS_PER_PEER", 2)
    with _server(("127.0.0.0/8",)) as (port, _):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        try:
            assert all(_get(s).startswith(b"HTTP/1.1 200") for s in held)
        finally:
            for s in held:
                s.close()


def test_accept_errors_are_logged_once_a_minute_without_traceback() -> None:
    filt = AcceptErrorFilter(interval=60.0)

    def record(msg: str) -> logging.LogRecord:
        try:
            raise OSError(24, "Too many open files")
        except OSError as exc:
            return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, (), (type(exc), exc, exc.__traceback__))

    first = record("socket.accept() out of system resource\nsocket: <socket>")
    assert filt.filter(first) and first.exc_info is None and "too many open connections" in first.getMessage()
    assert not any(filt.filter(record("socket.accept() out of system resource")) for _ in range(1000))
    assert filt.dropped == 1000
    other = record("Task exception was never retrieved")
    assert filt.filter(other) and other.exc_info is not None  # everything else untouched


def test_oversized_headers_and_urls_close_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "MAX_HEADER_BYTES", 4096)
    with _server() as (port, _):
        cases = [
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * 2000,  # many small headers
            b"GET /" + b"u" * 10_000 + b" HTTP/1.1\r\n",  # a long URL
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 600_000,  # one endless header line (raw bound)
        ]
        for request in cases:
            with socket.create_connection(("127.0.0.1", port)) as s:
                with contextlib.suppress(OSError):  # the server may close while we still send
                    s.sendall(request)
                assert _closed_by_server(s, 10)
        with socket.create_connection(("127.0.0.1", port)) as s:  # headers under the limit: served
            assert _get_with(s, b"a: b\r\n" * 100).startswith(b"HTTP/1.1 200")


def test_a_body_left_unsent_after_the_answer_closes_the_connection() -> None:
    with _server() as (port, _):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
            answer = b""
            while not answer.endswith(b"ok"):
                answer += s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")  # the app answers without the body
            assert _closed_by_server(s, 10)  # and the connection does not stay open for the rest


def test_websocket_upgrades_are_plain_requests_and_release_their_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "MAX_CONNECTIONS_PER_PEER", 3)
    with _server() as (port, proto):
        upgrade = (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                   b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(upgrade)
                answer = b""
                while not answer.endswith(b"ok"):
                    answer += s.recv(4096)
                assert answer.startswith(b"HTTP/1.1 200")  # served as HTTP, not upgraded
        wait_until(lambda: proto.open_per_peer == {}, 10, "every count released")
        with socket.create_connection(("127.0.0.1", port)) as s:
            assert _get(s).startswith(b"HTTP/1.1 200")


def test_an_ipv4_proxy_reaching_a_dual_stack_server_is_exempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "MAX_CONNECTIONS_PER_PEER", 2)
    proto = protocol_class(("127.0.0.1",))
    sock = socket.socket(socket.AF_INET6)
    try:
        sock.bind(("::", 0))
    except OSError:
        pytest.skip("no IPv6 on this machine")  # the mapping needs a dual-stack socket
    with serve_app(_app, sock=sock, http=proto, lifespan="off") as url:
        port = _port(url)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            assert all(_get(s).startswith(b"HTTP/1.1 200") for s in held)
            assert proto.open_per_peer == {}  # not counted: the proxy is exempt
        finally:
            for s in held:
                s.close()


def test_the_cli_servers_use_the_limits() -> None:
    from registry.cli.service_commands import _http_server, _StopSignals

    server = _http_server(_app, {"proxy_headers": False}, _StopSignals())
    assert issubclass(server.config.http, connections.HttpToolsProtocol)
    assert hasattr(server.config.http, "open_per_peer") and server.config.ws == "none"
    assert any(isinstance(f, AcceptErrorFilter) for f in logging.getLogger("asyncio").filters)


@pytest.mark.parametrize("header", [b"Content-Length: abc\r\n", b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n\r\nzz"])
def test_an_unparsable_request_is_answered_in_the_error_json(header: bytes) -> None:
    """The HTTP parser refuses a request it cannot parse before any app runs: the answer is
    still the API's ``{"error": {"code": "malformed", ...}}`` (400), and the connection closes."""
    import json

    with _server() as (port, _):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
            s.settimeout(10)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower(), answer
        assert json.loads(body)["error"]["code"] == "malformed"
