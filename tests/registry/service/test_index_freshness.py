"""The registry path fails closed when its chain index lags (registry/service/facade.py
FreshIndexRoots): a real Anvil, the real service with its threads, real HTTP, real proofs.

A removed member's last root stays "current" in an index that no longer follows the
chain; without the freshness bound the registry would authorize it past its window while
the relay's ledger path (registry/relay/authorization.py LedgerRoots) refuses it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3
from web3.providers.rpc import HTTPProvider

from registry.service.authorization import Reason
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import free_port
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.relay.authorization import LocalAuthorizer
from registry.service.facade import RegistryService
from registry.service.settings import Settings
from tests.support.clock import FakeClock
from tests.support.registry import running_registry
from zk.identity import Identity
from zk.proof import generate_proof
from zk.relay_scope import RelayScope, blob_message, epoch_at
from tests.support.registry import deployment_of
from zk.tree import LeanIMT, MerkleProof

BLOB = b"sent by a member about to be removed"
DIGEST = hashlib.sha256(BLOB).digest()


def _health(url: str) -> dict[str, object]:
    data: dict[str, object] = httpx.get(f"{url}/v1/health", timeout=30).json()
    return data


def test_a_stalled_index_refuses_instead_of_serving_a_removed_members_root(tmp_path: Path) -> None:
    with running_registry(tmp_path / "registry", index_max_age=1.0) as reg:
        settings = reg.settings
        operator = RegistryContract(
            reg.anvil.w3, reg.manifest.address("ZkIdRegistry"), Transactor(reg.anvil.w3, anvil_dev_account(0), poll_interval=0.01)
        )
        group = reg.manifest.default_group_id
        leaver, stayer = Identity("freshness-leaver"), Identity("freshness-stayer")
        operator.add_members(group, [leaver.commitment, stayer.commitment])
        tree = LeanIMT(leaves=[leaver.commitment, stayer.commitment])
        reg.wait_root(group, tree.root)
        path: MerkleProof = tree.generate_proof(0)

        def prove(slot: int) -> dict[str, object]:
            scope = RelayScope.of(reg.deployment, group, epoch_at(reg.clock(), settings.epoch_length), slot).encode()
            return generate_proof(leaver, path, blob_message(DIGEST), scope).to_dict()

        def authorize(proof: dict[str, object]) -> httpx.Response:
            body = {"group_id": group, "proof": proof, "blob_digest": DIGEST.hex()}
            return httpx.post(f"{reg.url}/v1/authorize", json=body, timeout=60)

        first = authorize(prove(0))
        assert first.status_code == 200, first.text  # a fresh index answers
        assert "index_stale" not in _health(reg.url)["reasons"]  # type: ignore[operator]

        # Stall the indexer: its node stops answering (the HTTP API keeps running).
        live_w3 = reg.service.indexer.w3
        reg.service.indexer.w3 = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))

        # On chain the member is removed, and the root it proves against passes its window.
        operator.remove_member(group, leaver.commitment, list(path.siblings))
        superseded = operator.root_superseded_at(group, tree.root)
        window = operator.group(group).root_window
        reg.anvil.w3.provider.make_request("evm_increaseTime", [window + 10])  # type: ignore[arg-type]
        reg.anvil.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert operator.is_root_valid(group, tree.root) is False
        reg.clock.offset = superseded + window + 10 - time.time()  # the registry's clock agrees
        late = prove(1)

        # The relay's ledger path refuses it: the root is expired on chain.
        local = LocalAuthorizer(
            reg.contract, tmp_path / "relay-nullifiers.sqlite", epoch_length=settings.epoch_length,
            message_limit=settings.message_limit, clock_skew=settings.clock_skew, clock=reg.clock,
        )
        assert local.authorize(late, group, DIGEST).reason is Reason.EXPIRED_ROOT

        # The registry path, on an index that still has the root as current, fails closed.
        reg.wait_until(lambda: "index_stale" in _health(reg.url)["reasons"], 30, "index_stale in health")  # type: ignore[operator]
        refused = authorize(late)
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["authorized"] is False and body["reason"] == "index_stale"
        assert body["error"]["code"] == "index_stale"
        assert reg.service.index.root_status(group, tree.root, reg.clock()).value == "valid"  # what it would have used

        # The indexer follows the chain again: the answer is the chain's (expired_root).
        reg.service.indexer.w3 = live_w3
        reg.wait_root(group, operator.root(group))
        reg.wait_until(lambda: "index_stale" not in _health(reg.url)["reasons"], 60, "a fresh index")  # type: ignore[operator]
        again = authorize(late)
        assert again.status_code == 403 and again.json()["reason"] == Reason.EXPIRED_ROOT.value, again.text


def test_after_a_restart_nothing_is_authorized_until_the_index_caught_up(
    registry_settings: Settings, deployed: Any, chain: Any
) -> None:
    """The index persists across restarts, but what it says is only as fresh as its last
    sync: a restarted registry refuses (index_stale) until it has synced once."""
    member = Identity("freshness-restart")
    deployed.registry.add_member(0, member.commitment)
    tree = LeanIMT(leaves=[member.commitment])
    first = RegistryService.open(registry_settings)
    try:
        first.sync()
        first.open_default_group()
        assert first.index.tree(0).root == tree.root
    finally:
        first.close()

    clock = FakeClock(deployed.registry.w3.eth.get_block("latest")["timestamp"])
    service = RegistryService.open(registry_settings, clock=clock)
    try:
        scope = RelayScope.of(deployment_of(deployed.manifest), 0, epoch_at(clock(), registry_settings.epoch_length), 0).encode()
        proof = generate_proof(member, tree.generate_proof(0), blob_message(DIGEST), scope).to_dict()
        assert service.authorize(proof, 0, DIGEST).reason is Reason.INDEX_STALE
        assert "index_stale" in service.health()["reasons"]
        service.sync()
        assert service.authorize(proof, 0, DIGEST).reason is Reason.OK
        assert "index_stale" not in service.health()["reasons"]
    finally:
        service.close()


def test_a_stalled_index_refuses_admission_proofs(tmp_path: Path) -> None:
    """The admission path reads roots of the admission group like authorization does: on a
    stalled index it refuses with 503 index_stale (a person removed from the admission group
    could otherwise keep admitting with a root the index still takes as current), burns no
    credential, and admits once the index follows the chain again."""
    from registry.client.api import build_admission_proof
    from tests.support.registry import OPERATOR_TOKEN

    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with running_registry(tmp_path / "registry", index_max_age=1.0) as reg, httpx.Client(base_url=reg.url, timeout=60) as http:
        r = http.post("/v1/groups", json={"admission": {"policy": "closed"}}, headers=auth)
        assert r.status_code == 201, r.text
        group_a = int(r.json()["group_id"])
        r = http.post("/v1/groups", json={"admission": {"policy": "zk", "admission_group": group_a}}, headers=auth)
        assert r.status_code == 201, r.text
        group_g = int(r.json()["group_id"])
        person = Identity("freshness-admitted-person")
        r = http.post(f"/v1/groups/{group_a}/members", json={"commitments": [str(person.commitment)]}, headers=auth)
        assert r.status_code == 202, r.text
        tree = LeanIMT(leaves=[person.commitment])
        reg.wait_root(group_a, tree.root)
        new = Identity("freshness-admitted-zkid").commitment
        body: dict[str, Any] = {
            "commitments": [str(new)],
            "admission_proof": build_admission_proof(person, tree.generate_proof(0), group_g, 0, new, registry=reg.deployment).to_dict(),
        }

        live_w3 = reg.service.indexer.w3
        reg.service.indexer.w3 = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
        reg.wait_until(lambda: "index_stale" in _health(reg.url)["reasons"], 30, "index_stale in health")  # type: ignore[operator]
        refused = http.post(f"/v1/groups/{group_g}/members", json=body)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "index_stale", refused.text
        assert reg.service.admission.nullifier_count() == 0 and reg.service.outbox.get(group_g, new) is None

        reg.service.indexer.w3 = live_w3
        reg.wait_until(lambda: "index_stale" not in _health(reg.url)["reasons"], 60, "a fresh index")  # type: ignore[operator]
        admitted = http.post(f"/v1/groups/{group_g}/members", json=body)
        assert admitted.status_code == 202, admitted.text
