"""A send the relay refuses for its own reasons (mailbox conflict, no disk room, a failed
write) must not spend the sender's authorization: a real relay over HTTP with real
Semaphore proofs, authorizing locally against the session Anvil, or through a real
registry (its own Anvil) in registry mode."""

from __future__ import annotations

import errno
import hashlib
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.registry import Registry, anchored_member, deployment_of
from tests.registry.relay.support import send_body, running_relay
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message, epoch_at
from zk.tree import LeanIMT, MerkleProof


def _proof(who: Identity, merkle: Any, blob: bytes, group: int, epoch: int, slot: int, home: RegistryRef) -> SemaphoreProof:
    scope = RelayScope.of(home, group, epoch, slot).encode()
    return generate_proof(who, merkle, blob_message(hashlib.sha256(blob).digest()), scope)


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def _conflict_then_other_mailbox(http: httpx.Client, proof_of: Any, group: int) -> None:
    """A mailbox owned by one capability; another capability's send to it is refused with
    mailbox_conflict, and the very same proof then goes through to another mailbox."""
    taken, owner = secrets.token_bytes(32), secrets.token_bytes(32)
    first = b"first blob, owns the mailbox"
    r = http.post("/v1/blobs", json=send_body(taken, owner, first, group, proof_of(first, 0)))
    assert r.status_code == 201, r.text

    blob = b"second blob, wrong capability"
    proof = proof_of(blob, 1)
    r = http.post("/v1/blobs", json=send_body(taken, secrets.token_bytes(32), blob, group, proof))
    assert r.status_code == 409 and _code(r) == "mailbox_conflict", r.text
    r = http.post("/v1/blobs", json=send_body(secrets.token_bytes(32), secrets.token_bytes(32), blob, group, proof))
    assert r.status_code == 201, r.text  # the slot was not spent by the refusal
    r = http.post("/v1/blobs", json=send_body(secrets.token_bytes(32), secrets.token_bytes(32), blob, group, proof))
    assert r.status_code == 409 and _code(r) == "nullifier_reused", r.text  # ...and is spent now


def test_local_refusals_keep_the_slot(tmp_path: Path, anvil: Any, deployed: Any, chain: Any, monkeypatch: Any) -> None:
    registry = deployed.registry
    group = registry.create_group()
    alice = Identity("refusal-alice")
    registry.add_members(group, [alice.commitment])
    tree = LeanIMT(leaves=[alice.commitment])
    data = tmp_path / "relay"

    with running_relay(data, anvil.rpc_url, deployed.manifest) as (url, relay, _app), httpx.Client(
        base_url=url, timeout=60
    ) as http:
        epoch = epoch_at(relay.clock(), 600)
        _conflict_then_other_mailbox(http, lambda blob, slot: _proof(alice, tree, blob, group, epoch, slot, deployment_of(deployed.manifest)), group)

        # A write that fails after the claim gives the claim back (the fault is injected:
        # a full disk cannot be made for real here).
        blob = b"written on a failing disk"
        proof = _proof(alice, tree, blob, group, epoch, 2, deployment_of(deployed.manifest))
        body = send_body(secrets.token_bytes(32), secrets.token_bytes(32), blob, group, proof)
        with monkeypatch.context() as patch:
            def full(*_args: Any, **_kwargs: Any) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            patch.setattr(relay.store, "_write", full)
            r = http.post("/v1/blobs", json=body)
        assert r.status_code == 503 and _code(r) == "store_failed", r.text
        assert "was not used" in r.json()["error"]["message"]
        assert not any(p.suffix == ".tmp" for p in (data / "blobs").iterdir())
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 201, r.text
        count = relay.store.count()

    # Not enough disk room: refused before authorizing (507), the slot stays usable.
    blob = b"no room for this one"
    proof = _proof(alice, tree, blob, group, epoch, 3, deployment_of(deployed.manifest))
    body = send_body(secrets.token_bytes(32), secrets.token_bytes(32), blob, group, proof)
    with running_relay(data, anvil.rpc_url, deployed.manifest, min_free_bytes=2**62) as (url, relay, _app), httpx.Client(
        base_url=url, timeout=60
    ) as http:
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 507 and _code(r) == "insufficient_storage", r.text
        assert relay.store.count() == count
    with running_relay(data, anvil.rpc_url, deployed.manifest) as (url, relay, _app), httpx.Client(
        base_url=url, timeout=60
    ) as http:
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 201, r.text
        assert relay.store.count() == count + 1


@pytest.fixture(scope="module")
def member(registry: Registry) -> tuple[Identity, MerkleProof]:
    return anchored_member(registry, "refusal-registry-member")


def test_registry_mode_conflict_is_refused_before_the_registry_claims(
    registry: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path
) -> None:
    who, merkle = member
    epoch = epoch_at(registry.clock(), registry.settings.epoch_length)
    with running_relay(
        tmp_path / "relay", registry.settings.rpc_url or "", registry.manifest,
        auth_mode="registry", registry_url=registry.url,
    ) as (url, _relay, _app), httpx.Client(base_url=url, timeout=60) as http:
        _conflict_then_other_mailbox(http, lambda blob, slot: _proof(who, merkle, blob, 0, epoch, slot, registry.deployment), 0)


def _bad_proofs(good: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A valid proof's JSON changed one way each: what breaks the schema, and a schema-valid
    proof whose points are off their curves (a decision)."""
    from zk.field import R

    return {
        "point with a leading zero": {**good, "points": ["0" + good["points"][0], *good["points"][1:]]},
        "seven points": {**good, "points": good["points"][:7]},
        "nullifier not below r": {**good, "nullifier": str(R)},
        "depth 0": {**good, "merkleTreeDepth": 0},
        "an extra key": {**good, "extra": 1},
        "points off their curves": {**good, "points": ["1"] * 8},
    }


def test_registry_and_relay_answer_a_bad_proof_alike(
    registry: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path
) -> None:
    """One refusal table (registry/errors.py): the registry's POST /v1/authorize and a
    relay's POST /v1/blobs give the same status and code for the same bad proof: 422 for a
    proof that breaks the schema, 403 (with the decision fields) for one that does not."""
    who, merkle = member
    epoch = epoch_at(registry.clock(), registry.settings.epoch_length)
    blob = b"a blob sent with a bad proof"
    good = _proof(who, merkle, blob, 0, epoch, 7, registry.deployment).to_dict()
    with running_relay(tmp_path / "relay", registry.settings.rpc_url or "", registry.manifest) as (url, _relay, _app), \
            httpx.Client(base_url=url, timeout=60) as relay_http, registry.client() as registry_http:
        for name, proof in _bad_proofs(good).items():
            at_registry = registry_http.post(
                "/v1/authorize", json={"group_id": 0, "proof": proof, "blob_digest": hashlib.sha256(blob).hexdigest()}
            )
            body = send_body(secrets.token_bytes(32), secrets.token_bytes(32), blob, 0, SemaphoreProof.from_dict(good))
            at_relay = relay_http.post("/v1/blobs", json={**body, "proof": proof})
            expected = 403 if name == "points off their curves" else 422
            assert (at_registry.status_code, _code(at_registry)) == (expected, "malformed"), (name, at_registry.text)
            assert (at_relay.status_code, _code(at_relay)) == (expected, "malformed"), (name, at_relay.text)
            if expected == 403:
                assert at_relay.json()["reason"] == at_registry.json()["reason"] == "malformed"
                assert at_relay.json()["authorized"] is at_registry.json()["authorized"] is False
