"""The explorer's JSON side (registry/web/routes/explorer.py) under a failing ledger."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from web3 import Web3
from web3.providers.rpc import HTTPProvider

from registry.web.routes.explorer import ReceiptCache
from tests.support.wait import wait_until


@pytest.fixture
def hung_node() -> Iterator[tuple[str, list[socket.socket]]]:
    """A real TCP server that accepts JSON-RPC connections and never answers (a hung node)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_a_hung_ledger_is_asked_once_per_pause_not_once_per_batch(hung_node: tuple[str, list[socket.socket]]) -> None:
    """A page lists up to 200 batches; each receipt read on a hung node waits for the RPC
    timeout. Before, every uncached batch was asked (200 timeouts for one page view); now
    a failure pauses the reads for RETRY_AFTER seconds of the cache's clock."""
    url, accepted = hung_node
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 0.2}, exception_retry_configuration=None))
    service: Any = SimpleNamespace(w3=w3)
    now = [1000.0]
    cache = ReceiptCache(clock=lambda: now[0])
    hashes = [f"0x{i:064x}" for i in range(1, 21)]
    assert [cache.gas_and_fee(service, h) for h in hashes] == [None] * 20
    wait_until(lambda: len(accepted) >= 1, 10, "the connection")  # (the accepting thread may lag)
    assert len(accepted) == 1  # one read timed out; the other 19 were not attempted
    now[0] += ReceiptCache.RETRY_AFTER
    assert cache.gas_and_fee(service, hashes[0]) is None
    wait_until(lambda: len(accepted) >= 2, 10, "the second connection")  # after the pause, asked again
    assert len(accepted) == 2
