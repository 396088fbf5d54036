"""Connection-level limits of the HTTP servers (registry and relay), below the ASGI app.

The per-IP token buckets (registry/web/rate_limit.py) and the body timeout
(registry/web/middleware.py) act on requests; a connection that never completes its
request line and headers never reaches them. uvicorn has no header timeout and no
per-client connection cap, so one client could hold every file descriptor of the process
with connections that trickle a byte now and then (slowloris), and each failed
``accept()`` then logs a traceback (the disk fills). Here:

- :data:`HEADER_TIMEOUT`: a request's line and headers must arrive within this many
  seconds of the connection (or of the previous response, on a kept-alive one), else the
  connection is closed without an answer;
- :data:`MAX_HEADER_BYTES`: a request line and headers larger than this close the
  connection (the parser would otherwise hold them all in memory until the timeout);
  while headers are expected, at most :data:`MAX_HEADER_READ` raw bytes are read;
- a response sent before its request's body arrived in full closes the connection (the
  rest of the body would otherwise keep it open with no timer running);
- WebSocket upgrades are not served (the API has none; an upgraded connection would leave
  this protocol without being counted out);
- :data:`MAX_CONNECTIONS_PER_PEER`: open connections per client address (IPv6 per /64,
  as the rate limiter counts), beyond which new ones are closed at once; trusted proxies
  (``--trusted-proxy``) are exempt: every client behind them shares their address;
- :class:`AcceptErrorFilter`: asyncio's "out of system resource" accept errors logged
  once a minute, without the traceback;
- :func:`raise_open_files_limit`: the soft descriptor limit raised to the hard one.

Nothing here logs an address (docs/privacy.md): only counts leave this module.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from registry.errors import error_body
from registry.web.rate_limit import client_key

#: Seconds for a request line and its headers (nginx's ``client_header_timeout`` is 60 s;
#: on a phone network headers take well under a second).
HEADER_TIMEOUT = 15.0
#: Open connections per client address (a browser opens 6 per host; a relay's registry
#: client pools a few dozen).
MAX_CONNECTIONS_PER_PEER = 256
#: Bytes of a request line and headers (nginx's default buffers hold 8 KiB; h11's limit
#: is 16 KiB).
MAX_HEADER_BYTES = 64 * 1024
#: Raw bytes read while a request's headers are expected: the headers and the first part
#: of a body sent with them (asyncio reads at most 256 KiB at a time), bounding a single
#: endless header line that the parser buffers before it reports it.
MAX_HEADER_READ = 512 * 1024


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of this module. Subclassed once per
    server by :func:`protocol_class` (its own exempt networks and counts)."""

    #: Networks whose connections are not counted (trusted proxies).
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: Open connections per client key (counts only; tests read it).
    open_per_peer: dict[str, int] = {}
    _peer: str | None = None
    _header_timer: asyncio.TimerHandle | None = None
    _in_headers = True  # the next bytes are a request line and headers
    _header_read = 0  # raw bytes read since
    _header_size = 0  # bytes of the URL and headers parsed since
    _refused = False

    @classmethod
    def _is_exempt(cls, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # an IPv4 proxy reaching a server bound to ::
        return any(addr in net for net in cls.exempt)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        if host is not None and not self._is_exempt(host):
            key = client_key(host)
            if self.open_per_peer.get(key, 0) >= MAX_CONNECTIONS_PER_PEER:
                transport.abort()  # connection_lost follows; nothing was counted
                return
            self.open_per_peer[key] = self.open_per_peer.get(key, 0) + 1
            self._peer = key
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        key, self._peer = self._peer, None
        if key is not None:
            left = self.open_per_peer.get(key, 1) - 1
            if left > 0:
                self.open_per_peer[key] = left
            else:
                self.open_per_peer.pop(key, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers:
            self._header_read += len(data)
            if self._header_read > MAX_HEADER_READ:
                self._refuse()
                return
        super().data_received(data)

    def on_url(self, url: bytes) -> None:
        if self._count_header_bytes(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count_header_bytes(len(name) + len(value) + 4):
            super().on_header(name, value)

    def _count_header_bytes(self, n: int) -> bool:
        self._header_size += n
        if self._header_size > MAX_HEADER_BYTES:
            self._refuse()
        return not self._refused

    def send_400_response(self, msg: str) -> None:
        """The HTTP parser's refusal (a request line or header it cannot parse: a
        ``Content-Length`` that is not a number, a bad chunk size) in the API's error JSON,
        ``400 malformed``, not uvicorn's plain text; the connection is closed."""
        body = error_body("malformed", "the request could not be parsed as HTTP/1.1 (its request line or a header)")
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(head))
        self.transport.close()

    def _refuse(self) -> None:
        """Close without an answer: headers this large are not a client's."""
        self._refused = True
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.close()

    # After a refusal the parser still runs through the rest of the chunk it was fed:
    # its callbacks must neither start the app nor touch a request that never began.
    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._start_headers()  # what follows is the next request

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            # Answered before its body arrived in full: the rest of the body would keep
            # the connection open with no timer running (and would not be a request).
            self.transport.close()

    def _start_headers(self) -> None:
        self._in_headers = True
        self._header_read = 0
        self._header_size = 0

    # WebSocket upgrades are not served (server_options sets ws="none"), and the
    # request is answered as plain HTTP without uvicorn's warnings per request.
    def _should_upgrade_to_ws(self) -> bool:
        return False

    def _unsupported_upgrade_warning(self) -> None:
        pass

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        # The next request of a kept-alive connection (uvicorn's keep-alive timer
        # closed it if it stayed idle): its headers get their own deadline.
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._in_headers = False
        if not self._refused:
            super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(trusted_proxies: Sequence[str] = ()) -> type[LimitedProtocol]:
    """The protocol class of one server: its trusted proxies exempt, its own counts."""
    exempt = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
    return type("LimitedProtocol", (LimitedProtocol,), {"exempt": exempt, "open_per_peer": {}})


class AcceptErrorFilter(logging.Filter):
    """Passes asyncio's "out of system resource" accept error once per ``interval``
    seconds, without its traceback; every other record unchanged."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last = float("-inf")
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.MESSAGE):
            return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self.dropped += 1
            return False
        self._last = now
        record.exc_info = None
        record.exc_text = None
        record.msg = f"{self.MESSAGE}: too many open connections (file descriptors); new ones wait (logged once a minute)"
        record.args = ()
        return True


def install_accept_error_filter() -> None:
    """Once per process, on the ``asyncio`` logger."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorFilter) for f in logger.filters):
        logger.addFilter(AcceptErrorFilter())


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(soft)


def server_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """The uvicorn options of this module, for ``uvicorn.Config``."""
    install_accept_error_filter()
    raise_open_files_limit()
    return {"http": protocol_class(trusted_proxies), "ws": "none"}
