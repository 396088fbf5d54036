"""Two regions, two ledgers (docs/authorization.md "Group references are global"): a proof
made for group 0 of region A's registry is refused as group 0 of region B's registry, by
B's ``POST /v1/authorize`` and by a relay checking B's ledger itself, with the code
``wrong_registry``; an ``LZE1`` proof is refused with ``scope_version_unsupported``.

The two Anvil chains differ only in their chain id: the same deployer deploys the same
contracts at the same addresses on both, and the same identity is the only member of
group 0 on both, so the two groups have the same root. Only the registry tag of the
``LZE2`` scope tells them apart (under ``LZE1`` B would have accepted A's proof).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from tests.registry.relay.support import running_relay, send_body
from tests.support.registry import Registry, anchored_member, running_registry
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RelayScope, blob_message, epoch_at
from zk.tree import MerkleProof

BLOB = b"a blob for a recipient in another region"
DIGEST = hashlib.sha256(BLOB).digest()


def _proof(who: Identity, merkle: MerkleProof, scope: int) -> SemaphoreProof:
    return generate_proof(who, merkle, blob_message(DIGEST), scope)


def _authorize(registry: Registry, proof: SemaphoreProof) -> httpx.Response:
    body = {"group_id": 0, "proof": proof.to_dict(), "blob_digest": DIGEST.hex()}
    return httpx.post(f"{registry.url}/v1/authorize", json=body, timeout=60)


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def _lze1(epoch: int, slot: int) -> int:
    """An ``LZE1`` scope of group 0 (no registry in it), as a client before ``LZE2`` made it."""
    return int.from_bytes(b"LZE1" + bytes(8) + epoch.to_bytes(8, "big") + slot.to_bytes(4, "big") + bytes(8), "big")


def test_a_proof_for_region_as_group_0_is_refused_as_region_bs_group_0(tmp_path: Path) -> None:
    with running_registry(tmp_path / "region-a") as a, running_registry(
        tmp_path / "region-b", anvil_args=["--chain-id", "31338"]
    ) as b:
        assert (a.deployment.chain_id, b.deployment.chain_id) == (31337, 31338)
        assert a.deployment.contract == b.deployment.contract  # same deployer, same nonces
        assert a.deployment.tag != b.deployment.tag
        who, merkle_a = anchored_member(a, "member-of-two-regions")
        _, merkle_b = anchored_member(b, "member-of-two-regions")
        assert merkle_a.root == merkle_b.root  # the same group 0, root for root

        epoch = epoch_at(a.clock(), a.settings.epoch_length)
        for_a = _proof(who, merkle_a, RelayScope.of(a.deployment, 0, epoch, 0).encode())
        old = _proof(who, merkle_b, _lze1(epoch, 1))

        # Region B's registry: refused, no slot burnt, and the same for an LZE1 proof.
        _refused(_authorize(b, for_a), 403, "wrong_registry")
        assert _authorize(b, for_a).json()["authorized"] is False
        _refused(_authorize(b, old), 403, "scope_version_unsupported")

        # A relay checking region B's ledger itself (local mode): refused before storing.
        with running_relay(tmp_path / "relay-b", b.anvil.rpc_url, b.manifest) as (url, relay, _app), httpx.Client(
            base_url=url, timeout=60
        ) as http:
            mailbox, capability = b"\x01" * 32, b"\x02" * 32
            _refused(http.post("/v1/blobs", json=send_body(mailbox, capability, BLOB, 0, for_a)), 403, "wrong_registry")
            _refused(http.post("/v1/blobs", json=send_body(mailbox, capability, BLOB, 0, old)), 403, "scope_version_unsupported")
            assert relay.store.count() == 0
            # The member's proof for B itself goes through this relay.
            for_b = _proof(who, merkle_b, RelayScope.of(b.deployment, 0, epoch, 0).encode())
            response = http.post("/v1/blobs", json=send_body(mailbox, capability, BLOB, 0, for_b))
            assert response.status_code == 201, response.text

        # Each proof is good at its own region, and the two nullifiers are unrelated.
        assert for_b.nullifier != for_a.nullifier
        accepted: Any = _authorize(a, for_a)
        assert accepted.status_code == 200 and accepted.json()["authorized"] is True, accepted.text
        _refused(_authorize(a, for_b), 403, "wrong_registry")
