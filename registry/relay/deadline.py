"""Whole-request deadlines for a relay's upstream calls (docs/relay.md "Federated relays").

An HTTP library's read timeout bounds the time *between* bytes: a ledger or registry that
answers one byte at a time (a broken proxy, a hostile upstream) holds a request for as
long as it likes. Within ``with deadline(seconds):`` every connect, read and write of a
client made by :func:`deadline_client` (and of a :func:`ledger_web3` provider) in this
thread is cut off once the deadline has passed: it fails as a timeout of that step
(``httpx.ConnectTimeout`` before anything was sent, ``httpx.ReadTimeout`` after), so the
callers' "was it sent?" rules (registry/client/_http.py) apply unchanged.

The deadline is enforced in an httpcore network backend (:class:`DeadlineBackend`) put
under every connection pool of the client, proxies from the environment included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx
from web3 import Web3
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from registry.client._http import RegistryClientError, request
from registry.ledger.errors import LedgerUnavailable

_local = threading.local()

#: Bytes of a ledger node's JSON-RPC answer the relay reads (its reads answer a few
#: hundred): more is cut off as no answer.
LEDGER_ANSWER_LIMIT = 1024 * 1024


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound this thread's upstream I/O (module docstring); nested deadlines keep the earlier."""
    previous: float | None = getattr(_local, "at", None)
    at = time.monotonic() + seconds
    _local.at = at if previous is None else min(previous, at)
    try:
        yield
    finally:
        _local.at = previous


def _left(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of this thread's deadline (<= 0: passed)."""
    at: float | None = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.ReadTimeout("the request's deadline has passed")
        return self._inner.read(max_bytes, left)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.WriteTimeout("the request's deadline has passed")
        self._inner.write(buffer, left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.ConnectTimeout("the request's deadline has passed")
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """An httpcore backend whose streams obey this thread's :func:`deadline`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.ConnectTimeout("the request's deadline has passed")
        return _DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.ConnectTimeout("the request's deadline has passed")
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_client(url: str, timeout: float) -> httpx.Client:
    """An httpx client for ``url`` (``timeout`` per step) whose requests obey :func:`deadline`.
    httpx has no hook for a network backend: it is set on each of the client's pools
    (the default transport and the proxies' from the environment); a version of httpx
    without them fails here, at start-up, not silently."""
    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
    transports = [client._transport, *client._mounts.values()]  # noqa: SLF001 - see above
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if transport is None or pool is None:
            continue
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            client.close()
            raise RuntimeError("this httpx has no network backend to bound: upstream deadlines cannot be kept")
        pool._network_backend = DeadlineBackend(backend)  # noqa: SLF001
    return client


class DeadlineProvider(JSONBaseProvider):
    """A web3 JSON-RPC provider over a :func:`deadline_client` (requests, under web3's own
    provider, bounds only the time between bytes). Answers are capped at
    :data:`LEDGER_ANSWER_LIMIT`; a node that cannot be asked is :class:`LedgerUnavailable`."""

    def __init__(self, rpc_url: str, timeout: float) -> None:
        super().__init__()
        self.endpoint_uri = rpc_url
        self._http = deadline_client("", timeout)  # posted to rpc_url as it is (no slash added)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        body = self.encode_rpc_request(method, params)
        headers = {"Content-Type": "application/json"}
        try:
            response = request(self._http, "POST", self.endpoint_uri, content=body, headers=headers, max_bytes=LEDGER_ANSWER_LIMIT)
        except RegistryClientError as exc:
            raise LedgerUnavailable(f"the ledger node did not answer ({exc.code})") from None
        if response.status_code != 200:
            raise LedgerUnavailable(f"the ledger node answered HTTP {response.status_code}")
        return self.decode_rpc_response(response.content)

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self.make_request(RPCEndpoint("web3_clientVersion"), [])
        except (LedgerUnavailable, ValueError):
            if show_traceback:
                raise
            return False
        return True

    def close(self) -> None:
        self._http.close()


def ledger_web3(rpc_url: str, timeout: float) -> Web3:
    """A :class:`Web3` on ``rpc_url`` whose calls obey :func:`deadline`."""
    return Web3(DeadlineProvider(rpc_url, timeout))
