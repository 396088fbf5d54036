"""A real registry for the HTTP tests: a throw-away Anvil, the contracts deployed into a
temporary data directory, a ``RegistryService`` with its threads running and the FastAPI
app served by uvicorn on a free loopback port (in a thread of the test process)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from registry.web.app import create_app
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import AnvilProcess
from registry.ledger.deploy import Manifest, deploy_contracts, save_manifest
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.service.facade import RegistryService
from registry.service.settings import Settings

OPERATOR_TOKEN = "test-operator-token-0123456789"


class Clock:
    """Wall time plus an offset the test can move (the service's ``clock``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Registry:
    url: str
    settings: Settings
    service: RegistryService
    app: FastAPI
    anvil: AnvilProcess
    manifest: Manifest
    clock: Clock

    @property
    def contract(self) -> RegistryContract:
        return RegistryContract(self.anvil.w3, self.manifest.address("ZkIdRegistry"))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_included(self, group_id: int, commitments: list[int], timeout: float = 60.0) -> None:
        def done() -> bool:
            with self.client() as c:
                for value in commitments:
                    r = c.get(f"/v1/groups/{group_id}/members/{value}")
                    # "index" is set once the indexer has applied the member (proofs need it).
                    if r.status_code != 200 or r.json()["status"] == "pending" or r.json()["index"] is None:
                        return False
            return True

        self.wait_until(done, timeout, "registrations to be anchored and indexed")

    def wait_root(self, group_id: int, root: int, timeout: float = 60.0) -> None:
        """Until the index (and so the API) serves ``root`` as the group's current root."""

        def done() -> bool:
            with self.client() as c:
                return bool(c.get(f"/v1/groups/{group_id}").json().get("root") == str(root))

        self.wait_until(done, timeout, "the indexed root")


def zkid_command() -> list[str]:
    """``python -m registry.cli`` once the service commands are wired there; until then the
    same Typer commands on a private app (the same code path)."""
    from registry.cli import app

    if any(c.name == "up" for c in app.registered_commands):
        return [sys.executable, "-m", "registry.cli"]
    snippet = (
        "import typer; from registry.cli import service_commands as s; from registry.cli import app as main; "
        "s.register(main); main(prog_name='zkid')"
    )
    return [sys.executable, "-c", snippet]


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test process keeps its handlers
        yield


@contextlib.contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as `zkid up` does (no Nagle delay)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
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


@contextlib.contextmanager
def running_registry(data_dir: Path, **overrides: Any) -> Iterator[Registry]:
    """Anvil + deployment + service + uvicorn; everything stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with AnvilProcess(["--gas-limit", "300000000"], log_file=data_dir / "anvil.log") as anvil:
        manifest = deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0), poll_interval=0.01), region="test")
        save_manifest(data_dir, manifest)
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "rpc_url": anvil.rpc_url,
            "confirmations": 1,
            "poll_interval": 0.1,
            "batch_interval": 0.2,
            "operator_token": OPERATOR_TOKEN,
        }
        values.update(overrides)
        settings = Settings(**values)
        clock = Clock()
        service = RegistryService.open(settings, clock=clock)
        try:
            service.open_default_group()  # as `zkid up` does: group 0 is open (docs/admission.md)
            service.start()
            app = create_app(service, settings)
            with serve_app(app) as url:
                yield Registry(url, settings, service, app, anvil, manifest, clock)
        finally:
            service.stop()
            close = getattr(service, "close", None)
            if callable(close):
                close()
