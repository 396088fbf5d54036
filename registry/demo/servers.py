"""The demo's servers: uvicorn in a thread on a free loopback port, the registry service
with its threads, and a guard that keeps a Ctrl-C from orphaning a child process."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


class DemoError(RuntimeError):
    """A component did not answer as the scenario needs (the run stops, exit 1)."""


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yield its URL."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # signals stay with the main thread
            yield

    sock = socket.socket()
    # Without it each response waits for the client's delayed ACK (Nagle): ~40 ms a request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, server_header=False, lifespan="on", timeout_graceful_shutdown=2,
        proxy_headers=False,  # no proxy in front: the peer address is the client's
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"demo-http-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise DemoError("an HTTP server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        sock.close()


@contextlib.contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Hold SIGINT back for a block that starts a child process and hands it to the
    ExitStack, then raise the interrupt once the child can be stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def registry_service(settings: Any) -> Iterator[Any]:
    """A started :class:`registry.service.facade.RegistryService` (closing stops its threads first)."""
    from registry.service.facade import RegistryService

    with RegistryService.open(settings) as service:
        service.start()
        yield service
