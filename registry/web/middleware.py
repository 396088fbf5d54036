"""ASGI middleware of the registry's HTTP API (the relay uses :class:`BodyLimitMiddleware`
too): body size and time limits, the last-resort error guard, and request metrics.

Privacy: nothing here logs a path, body or value; the error guard logs an exception's
type and route template only, metrics are labelled by route *template*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from registry.errors import RegistryError
from registry.storage.access_log import ASGIApp, Message, Receive, Scope, Send
from registry.errors import error_body
from registry.web.errors import error_response
from registry.web.metrics import Metrics, TrafficMetrics, error_code

log = logging.getLogger(__name__)

#: A refused body is read and dropped up to this size (beyond it the connection is cut).
DRAIN_LIMIT = 1 << 20
#: Seconds a request body may take to arrive (408 ``request_timeout`` after them).
BODY_TIMEOUT = 30.0


class BodyLimitMiddleware:
    """413 ``too_large`` for bodies over ``limit`` bytes, decided before anything parses them:
    on the declared ``Content-Length`` at once, and while streaming for chunked bodies.
    ``limit`` may be a function of the request's scope (a limit per route).

    A body must also arrive within ``timeout`` seconds of the request's start, else 408
    ``request_timeout`` (a client trickling a body would hold a connection and a worker
    forever). A client that disconnects mid-body ends its request quietly: the app's
    ``ClientDisconnect`` is not an error of ours and is not logged."""

    def __init__(self, app: ASGIApp, limit: int | Callable[[Scope], int], timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        body = error_body(code, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drain(receive: Receive, message: Message, timeout: float) -> None:
        """Read (and drop) the rest of a refused body, up to ``DRAIN_LIMIT`` bytes and
        ``timeout`` seconds, so that a client still sending it reads our answer instead of
        a connection reset."""

        async def drain() -> None:
            drained = 0
            current = message
            while current.get("more_body", False) and drained <= DRAIN_LIMIT:
                current = await receive()
                if current.get("type") != "http.request":
                    return
                drained += len(current.get("body", b""))

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await drain()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope) if callable(self.limit) else self.limit
        loop = asyncio.get_running_loop()
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    await self._refuse(send, 400, "malformed", "invalid Content-Length")
                    return
                if int(value) > limit:
                    await self._refuse(send, 413, "too_large", f"request body larger than {limit} bytes")
                    if int(value) <= DRAIN_LIMIT:
                        await self._drain(receive, {"more_body": True}, self.timeout)
                    return
        seen = 0
        started = False
        refused = False
        disconnected = False
        body_done = False
        deadline: float | None = None  # from the app's first read: its own work does not count

        async def limited_receive() -> Message:
            nonlocal seen, refused, disconnected, body_done, deadline
            if deadline is None:
                deadline = loop.time() + self.timeout
            if refused:
                return {"type": "http.disconnect"}
            if body_done:
                message = await receive()  # waiting for a disconnect: no deadline
            else:
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for wraps every read in a
                    # task of its own (13 us against 5 us per read, measured on this machine).
                    async with asyncio.timeout(max(0.0, deadline - loop.time())):
                        message = await receive()
                except TimeoutError:
                    refused = True
                    if not started:
                        await self._refuse(send, 408, "request_timeout", f"the request body did not arrive within {self.timeout:g} s")
                    return {"type": "http.disconnect"}
            if message.get("type") == "http.disconnect":
                disconnected = True
            elif message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    # Answer now and tell the app the client is gone: whatever it does
                    # next (FastAPI turns the disconnect into an error) is not sent.
                    refused = True
                    if not started:
                        await self._refuse(send, 413, "too_large", f"request body larger than {limit} bytes")
                    await self._drain(receive, message, deadline - loop.time())
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            # After a refusal or the client's own disconnect, whatever the app raised
            # (starlette's ClientDisconnect) concerns nobody: no answer can reach the client.
            if not (refused or disconnected):
                raise


class ErrorGuardMiddleware:
    """Turns an unexpected exception into a 500 JSON error and logs only its type: an
    exception's message or traceback might hold a commitment or a proof."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            route = scope.get("route")
            log.error("internal error %s on %s", type(exc).__name__, getattr(route, "path", "unmatched"))
            if not started:
                response = error_response(RegistryError("internal", "internal error"))
                await response(scope, receive, send)


class MetricsMiddleware:
    """Counts every request by route template, method and status, its latency, and each
    answer >= 400 by route and ``error.code`` (one pass over the response for both)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, traffic: TrafficMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = False
        code: str | None = None
        t0 = time.perf_counter()

        async def status_send(message: Message) -> None:
            nonlocal status, started, code
            if message.get("type") == "http.response.start":
                status = int(message["status"])
                started = True
            elif message.get("type") == "http.response.body" and status >= 400 and code is None:
                code = error_code(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # the template, not the path
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
            if started and status >= 400:
                self.traffic.refusals.labels(route, code or "other").inc()

