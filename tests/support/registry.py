"""A real registry for the HTTP tests: a throw-away Anvil, the contracts deployed into a
temporary data directory, a ``RegistryService`` with its threads running and the FastAPI
app served by uvicorn on a free loopback port (in a thread of the test process).

The module-scoped ``registry`` fixture (tests/registry/conftest.py) is one of these."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from registry.client.api import RegistryClient
from registry.web.app import create_app
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import AnvilProcess
from registry.ledger.deploy import Manifest, deploy_contracts, save_manifest
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.service.facade import RegistryService
from registry.service.settings import Settings
from tests.support.clock import OffsetClock
from tests.support.net import serve_app
from tests.support.wait import wait_until
from zk.identity import Identity
from zk.relay_scope import RegistryRef
from zk.tree import LeanIMT, MerkleProof

OPERATOR_TOKEN = "test-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def deployment_of(manifest: Manifest) -> RegistryRef:
    """The (chain id, registry contract) of a deployment manifest: what its scopes name."""
    return RegistryRef(manifest.chain_id, manifest.address("ZkIdRegistry"))


@dataclass
class Registry:
    url: str
    settings: Settings
    service: RegistryService
    app: FastAPI
    anvil: AnvilProcess
    manifest: Manifest
    clock: OffsetClock
    #: Stops the HTTP server alone (Anvil and the service keep running), e.g. to show that a
    #: loaded page or a saved bundle needs only the ledger; a no-op once done.
    stop_serving: Callable[[], None] = lambda: None

    @property
    def contract(self) -> RegistryContract:
        return RegistryContract(self.anvil.w3, self.manifest.address("ZkIdRegistry"))

    @property
    def deployment(self) -> RegistryRef:
        """(chain id, registry contract): what this registry's scopes name (LZE2, LZA2)."""
        return deployment_of(self.manifest)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        wait_until(predicate, timeout, what, interval=0.1)

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


@contextlib.contextmanager
def running_registry(data_dir: Path, anvil_args: Sequence[str] = (), **overrides: Any) -> Iterator[Registry]:
    """Anvil + deployment + service + uvicorn; everything stopped on exit. ``anvil_args``
    go to Anvil (e.g. ``["--chain-id", "31338"]`` for a second region's ledger)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with AnvilProcess(["--gas-limit", "300000000", *anvil_args], log_file=data_dir / "anvil.log") as anvil:
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
        clock = OffsetClock()
        service = RegistryService.open(settings, clock=clock)
        try:
            service.open_default_group()  # as `zkid up` does: group 0 is open (docs/admission.md)
            service.start()
            app = create_app(service, settings)
            with contextlib.ExitStack() as server:
                url = server.enter_context(serve_app(app))
                yield Registry(url, settings, service, app, anvil, manifest, clock, server.close)
        finally:
            service.stop()
            service.close()


def anchored_member(registry: Registry, name: str) -> tuple[Identity, MerkleProof]:
    """The identity ``name`` registered in the open group 0 of a fresh ``registry``,
    anchored and indexed, with its Merkle proof (it is the group's only member)."""
    who = Identity(name)
    with RegistryClient(registry.url) as client:
        client.register(0, who.commitment)
        client.wait_until_anchored(0, who.commitment, timeout=60, interval=0.1)
        registry.wait_root(0, LeanIMT(leaves=[who.commitment]).root)
        return who, client.merkle_proof(0, who.commitment)
