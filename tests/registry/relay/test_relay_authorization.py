"""Relay authorization (registry/relay/authorization.py): roots read from the ledger, and the local
path against a real registry's POST /v1/authorize on the same inputs (real Anvil, real
service, real proofs)."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.service.authorization import Decision, Reason, RootStatus
from registry.relay.authorization import LedgerRoots, LocalAuthorizer, RegistryAuthClient, RemoteAuthorizationError
from tests.support.net import free_port
from tests.support.registry import Registry, anchored_member, deployment_of
from tests.registry.relay.support import running_relay
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message, epoch_at
from zk.tree import LeanIMT, MerkleProof


def test_ledger_roots_follow_the_contract(deployed: Any, chain: Any) -> None:
    registry = deployed.registry
    group = registry.create_group(root_window=100)
    a, b, c = Identity("roots-a"), Identity("roots-b"), Identity("roots-c")
    registry.add_member(group, a.commitment)
    first = registry.root(group)
    registry.add_member(group, b.commitment)
    second = registry.root(group)
    superseded = registry.root_superseded_at(group, first)
    assert superseded > 0

    roots = LedgerRoots(registry)
    assert roots.root_status(group, second, superseded + 10_000) is RootStatus.VALID  # current: always
    assert roots.root_status(group, first, superseded + 100) is RootStatus.VALID
    assert roots.root_status(group, first, superseded + 101) is RootStatus.EXPIRED
    assert roots.root_status(group, 12345, superseded) is RootStatus.UNKNOWN
    assert roots.root_status(group, 0, superseded) is RootStatus.UNKNOWN
    assert roots.group_exists(group) and not roots.group_exists(group + 1)

    # Same verdict as the contract's own isRootValid at the chain's time.
    now = registry.w3.eth.get_block("latest")["timestamp"]
    for root in (first, second, 12345):
        assert (roots.root_status(group, root, now) is RootStatus.VALID) == registry.is_root_valid(group, root)

    # A new block refreshes the cache (cache_blocks=1); a long-lived cache keeps the old view.
    stale = LedgerRoots(registry, cache_blocks=1000)
    assert stale.root_status(group, second, now) is RootStatus.VALID
    registry.add_member(group, c.commitment)
    third = registry.root(group)
    assert roots.root_status(group, third, now) is RootStatus.VALID
    assert stale.root_status(group, third, now) is RootStatus.UNKNOWN
    chain.increase_time(200)
    chain.mine()
    later = registry.w3.eth.get_block("latest")["timestamp"]
    assert roots.root_status(group, first, later) is RootStatus.EXPIRED
    assert registry.is_root_valid(group, first) is False

    with pytest.raises(ValueError):
        LedgerRoots(registry, cache_blocks=0)


#: Another chain's registry at the same address: only the chain id differs.
OTHER_DEPLOYMENT = RegistryRef(31338, "0x5fbdb2315678afecb367f032d93f642f64180aa3")


@pytest.fixture(scope="module")
def member(registry: Registry) -> tuple[Identity, MerkleProof]:
    return anchored_member(registry, "relay-auth-member")


def _proof(who: Identity, merkle: Any, blob: bytes, group: int, epoch: int, slot: int, home: RegistryRef) -> SemaphoreProof:
    digest = hashlib.sha256(blob).digest()
    return generate_proof(who, merkle, blob_message(digest), RelayScope.of(home, group, epoch, slot).encode())


def _lze1_proof(who: Identity, merkle: Any, blob: bytes, group: int, epoch: int, slot: int) -> SemaphoreProof:
    """A proof over a version-1 scope (group, epoch, slot; no registry), as an old client made it."""
    scope = int.from_bytes(b"LZE1" + group.to_bytes(8, "big") + epoch.to_bytes(8, "big") + slot.to_bytes(4, "big") + bytes(8), "big")
    return generate_proof(who, merkle, blob_message(hashlib.sha256(blob).digest()), scope)


def test_local_and_registry_paths_agree(registry: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path) -> None:
    who, merkle = member
    epoch = epoch_at(registry.clock(), registry.settings.epoch_length)
    limit = registry.settings.message_limit
    blob, other = b"same inputs", b"another blob"
    digest, other_digest = hashlib.sha256(blob).digest(), hashlib.sha256(other).digest()
    valid = _proof(who, merkle, blob, 0, epoch, 0, registry.deployment)
    outsider = Identity("relay-auth-outsider")
    foreign_tree = LeanIMT(leaves=[who.commitment, outsider.commitment])
    tampered = valid.to_dict()
    tampered["points"] = list(reversed(tampered["points"]))
    # JSON numbers as JavaScript writes them may carry ".0": the same integer on both paths.
    float_depth = _proof(who, merkle, blob, 0, epoch, 5, registry.deployment).to_dict()
    float_depth["merkleTreeDepth"] = float(float_depth["merkleTreeDepth"])
    wrong_depth = _proof(who, merkle, blob, 0, epoch, 6, registry.deployment).to_dict()
    wrong_depth["merkleTreeDepth"] = 17.0
    cases: list[tuple[str, Any, int, bytes, Reason]] = [
        ("valid", valid, 0, digest, Reason.OK),
        ("replayed", valid, 0, digest, Reason.NULLIFIER_REUSED),
        ("moved to another blob", valid, 0, other_digest, Reason.MESSAGE_MISMATCH),
        ("other group", valid, 1, digest, Reason.UNKNOWN_GROUP),
        ("non-member", _proof(outsider, foreign_tree, blob, 0, epoch, 1, registry.deployment), 0, digest, Reason.UNKNOWN_ROOT),
        ("slot over the limit", _proof(who, merkle, blob, 0, epoch, limit, registry.deployment), 0, digest, Reason.SLOT_OUT_OF_RANGE),
        ("old epoch", _proof(who, merkle, blob, 0, epoch - 3, 0, registry.deployment), 0, digest, Reason.WRONG_EPOCH),
        # LZE2 (docs/authorization.md): an LZE1 scope is refused by its version, a scope
        # naming another deployment (chain id, registry contract) by its registry.
        ("LZE1 scope", _lze1_proof(who, merkle, blob, 0, epoch, 8), 0, digest, Reason.SCOPE_VERSION_UNSUPPORTED),
        ("another registry", _proof(who, merkle, blob, 0, epoch, 9, OTHER_DEPLOYMENT), 0, digest, Reason.WRONG_REGISTRY),
        ("tampered points", tampered, 0, digest, None),  # malformed or invalid: both paths must say the same
        ("merkleTreeDepth 1.0", float_depth, 0, digest, Reason.OK),
        ("merkleTreeDepth 17.0", wrong_depth, 0, digest, Reason.INVALID_PROOF),
        ("group id 2^53 - 1", valid, 2**53 - 1, digest, Reason.UNKNOWN_GROUP),
        ("group id 2^53", valid, 2**53, digest, Reason.MALFORMED),
        ("group id 2^64 - 1", valid, 2**64 - 1, digest, Reason.MALFORMED),
        ("group id 0.0", valid, 0.0, digest, Reason.NULLIFIER_REUSED),
        ("group id True", valid, True, digest, Reason.MALFORMED),
    ]
    local = LocalAuthorizer(
        registry.contract,
        tmp_path / "nullifiers.sqlite",
        epoch_length=registry.settings.epoch_length,
        message_limit=limit,
        clock_skew=registry.settings.clock_skew,
        clock=registry.clock,
    )
    with RegistryAuthClient(registry.url) as remote:
        for name, proof, group, blob_digest, expected in cases:
            here: Decision = local.authorize(proof, group, blob_digest)
            there: Decision = remote.authorize(proof, group, blob_digest)
            assert here == there, name
            if expected is not None:
                assert here.reason is expected, name
            else:
                assert not here.authorized and here.reason in (Reason.MALFORMED, Reason.INVALID_PROOF), name
    first = local.authorize(valid, 0, digest)
    assert first.reason is Reason.NULLIFIER_REUSED and first.nullifier == valid.nullifier and first.epoch == epoch


def test_relay_authorizing_through_the_registry(
    registry: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path
) -> None:
    who, merkle = member
    epoch = epoch_at(registry.clock(), registry.settings.epoch_length)
    blob = b"relayed through the registry"
    proof = _proof(who, merkle, blob, 0, epoch, 7, registry.deployment)
    body = {
        "mailbox": "ab" * 32,
        "pickup_hash": hashlib.sha256(b"capability").hexdigest(),
        "blob": base64.b64encode(blob).decode(),
        "group_id": 0,
        "proof": proof.to_dict(),
    }
    with running_relay(
        tmp_path / "relay", registry.settings.rpc_url or "", registry.manifest,
        auth_mode="registry", registry_url=registry.url,
    ) as (url, relay, _app), httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 201, r.text
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "nullifier_reused"
        assert relay.store.count() == 1


def test_unreachable_registry_or_ledger(
    tmp_path: Path, anvil: Any, deployed: Any, member: tuple[Identity, MerkleProof]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with RegistryAuthClient(dead, timeout=2) as remote, pytest.raises(RemoteAuthorizationError):
        remote.authorize({"merkleTreeDepth": 1}, 0, bytes(32))
    who, merkle = member
    blob = b"ledger down"
    proof = _proof(who, merkle, blob, 0, epoch_at(time.time(), 600), 0, deployment_of(deployed.manifest))
    body = {"mailbox": "ab" * 32, "pickup_hash": "cd" * 32, "blob": base64.b64encode(blob).decode(), "group_id": 0, "proof": proof.to_dict()}
    with running_relay(
        tmp_path / "relay", anvil.rpc_url, deployed.manifest, auth_mode="registry", registry_url=dead
    ) as (url, _relay, _app), httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "authorization_unavailable"
        # A proof that breaks the schema is refused without asking anyone (as the registry would).
        r = http.post("/v1/blobs", json={**body, "proof": {"x": 1}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "malformed"

    # Local mode with the ledger down: 503, not a refusal of a well-formed proof.
    with running_relay(tmp_path / "relay-local", dead, deployed.manifest) as (url, _relay, _app), httpx.Client(
        base_url=url, timeout=30
    ) as http:
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "authorization_unavailable", r.text


def test_ledger_head_is_read_once_per_interval_and_new_roots_are_seen_at_once(
    anvil: Any, deployed: Any, chain: Any
) -> None:
    """With ``head_interval`` the lookups of many sends share one head read (no RPC call per
    send); a root anchored after that read is still found (a forced read), never refused."""
    registry = deployed.registry
    group = registry.create_group()
    registry.add_member(group, Identity("head-a").commitment)
    first = registry.root(group)
    reads: list[int] = []

    class Counted(LedgerRoots):
        def _read_head(self) -> int:
            reads.append(1)
            return super()._read_head()

    roots = Counted(registry, head_interval=60.0)
    now = registry.w3.eth.get_block("latest")["timestamp"]
    for _ in range(5):
        assert roots.group_exists(group) and roots.root_status(group, first, now) is RootStatus.VALID
    assert len(reads) == 1
    registry.add_member(group, Identity("head-b").commitment)
    second = registry.root(group)
    assert roots.root_status(group, second, now) is RootStatus.VALID  # not in the cached view: read again
    assert len(reads) == 2
    assert roots.root_status(group, 12345, now) is RootStatus.UNKNOWN
    # Groups only grow: one seen to exist is not asked about again; a new one is found.
    before = len(reads)
    assert roots.group_exists(group) and len(reads) == before
    newer = registry.create_group()
    assert roots.group_exists(newer) and not roots.group_exists(newer + 1)
    with pytest.raises(ValueError):
        LedgerRoots(registry, head_interval=-1.0)
