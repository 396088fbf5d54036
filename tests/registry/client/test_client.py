"""The client SDK (registry/client/api.py): the trustless group rebuild from contract events
(real Anvil), send slots, the HTTP client against a real registry, acknowledgements."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from registry.service.authorization import Reason
from registry.client.api import (
    LedgerMismatchError,
    RegistryClient,
    RegistryClientError,
    RelaySendError,
    SendSlots,
    SlotsExhaustedError,
    acknowledge,
    acknowledge_anonymously,
    build_send_authorization,
    group_from_ledger,
    registry_of,
    send_blob,
)
from registry.relay.authorization import RegistryAuthClient
from tests.support.net import free_port
from tests.support.registry import Registry
from zk.identity import Identity
from zk.relay_scope import RegistryRef, blob_message, decode_scope, epoch_at
from zk.tree import LeanIMT


def test_group_from_ledger_follows_adds_updates_removes(deployed: Any, chain: Any) -> None:
    registry = deployed.registry
    group = registry.create_group()
    noise = registry.create_group()  # another group's events must not leak in
    ids = [Identity(f"ledger-member-{i}").commitment for i in range(6)]
    reference = LeanIMT()

    start = registry.w3.eth.block_number
    registry.add_members(group, ids[:3])
    reference.insert_many(ids[:3])
    registry.add_members(noise, [ids[5]])
    after_first = registry.w3.eth.block_number
    registry.add_member(group, ids[3])
    reference.insert(ids[3])
    registry.update_member(group, ids[1], ids[4], list(reference.generate_proof(1).siblings))
    reference.update(1, ids[4])
    registry.remove_member(group, ids[2], list(reference.generate_proof(2).siblings))
    reference.remove(2)
    registry.add_members(group, [ids[2]])  # a removed commitment may come back, at a new index
    reference.insert(ids[2])

    rebuilt = group_from_ledger(registry, group)
    assert rebuilt.root == registry.root(group) == reference.root
    assert rebuilt.leaves == reference.leaves and rebuilt.size == registry.size(group)
    assert group_from_ledger(registry, group, from_block=start, chunk=1).root == reference.root
    assert group_from_ledger(registry, noise).leaves == [ids[5]]

    # Missing events cannot go unnoticed: the next event's newRoot no longer matches.
    with pytest.raises(LedgerMismatchError):
        group_from_ledger(registry, group, from_block=after_first + 1)
    with pytest.raises(ValueError):
        group_from_ledger(registry, group, chunk=0)


def test_send_slots_never_reuse(tmp_path: Path) -> None:
    path = tmp_path / "slots.sqlite"
    one, two = SendSlots(path), SendSlots(path)  # two handles on one file, like two processes
    got = [(one if i % 2 else two).claim(3, 1000, 5) for i in range(5)]
    assert sorted(got) == [0, 1, 2, 3, 4]
    with pytest.raises(SlotsExhaustedError):
        one.claim(3, 1000, 5)
    assert two.claim(3, 1001, 5) == 0  # a new epoch starts over
    assert one.claim(4, 1000, 5) == 0  # groups are separate
    one.close()
    two.close()
    again = SendSlots(path)
    assert again.used(3, 1000) == [0, 1, 2, 3, 4]
    assert again.claim(3, 1001, 5) == 1
    again.claim(3, 1010, 5)  # epochs far behind are forgotten
    assert again.used(3, 1000) == []
    with pytest.raises(ValueError):
        again.claim(3, 1010, 0)
    again.close()


def test_registry_client_register_wait_proof_and_send(registry: Registry, tmp_path: Path) -> None:
    alice, bob = Identity("client-alice"), Identity("client-bob")
    seen: list[str] = []
    with RegistryClient(registry.url) as client:
        first = client.register(0, alice.commitment)
        assert first["status"] in ("pending", "included", "final")
        client.register(0, bob.commitment)
        with pytest.raises(RegistryClientError) as dup:
            client.register(0, alice.commitment)
        assert dup.value.code == "duplicate" and dup.value.status == 409
        with pytest.raises(RegistryClientError) as missing:
            client.status(0, Identity("client-nobody").commitment)
        assert missing.value.status == 404
        with pytest.raises(ValueError):
            client.register(0, 0)

        done = client.wait_until_anchored(0, alice.commitment, timeout=60, progress=lambda s: seen.append(s["status"]), interval=0.1)
        client.wait_until_anchored(0, bob.commitment, timeout=60, interval=0.1)
        assert done["index"] is not None and seen[-1] in ("included", "final")
        tree = group_from_ledger(registry.contract, 0)
        registry.wait_root(0, tree.root)
        merkle = client.merkle_proof(0, alice.commitment)
        assert merkle == tree.generate_proof(tree.index_of(alice.commitment))  # the registry agrees with the chain
        assert client.group(0)["root"] == str(tree.root)

        # A send authorization made from the registry's proof is accepted once, per slot.
        info = client.group(0)
        slots = SendSlots(tmp_path / "slots.sqlite")
        blob = b"hello relay"
        proof, digest = build_send_authorization(
            alice, merkle, 0, blob, registry.clock(), slots, registry=registry_of(info),
            epoch_length=info["epoch_length"], message_limit=info["message_limit"],
        )
        assert digest == hashlib.sha256(blob).digest() and proof.message == blob_message(digest)
        scope = decode_scope(proof.scope)
        assert (scope.group_id, scope.epoch, scope.slot) == (0, epoch_at(registry.clock(), info["epoch_length"]), 0)
        # The scope names this deployment: the registry's answer is the manifest's (LZE2).
        assert registry_of(info) == registry.deployment and scope.registry_tag == registry.deployment.tag
        assert client.send_parameters(0) == (registry.deployment, info["epoch_length"], info["message_limit"])
        second, _ = build_send_authorization(alice, tree, 0, blob, registry.clock(), slots, registry=registry.deployment)
        assert decode_scope(second.scope).slot == 1 and second.nullifier != proof.nullifier
        with RegistryAuthClient(registry.url) as auth:
            assert auth.authorize(proof, 0, digest).reason is Reason.OK
            assert auth.authorize(proof, 0, digest).reason is Reason.NULLIFIER_REUSED
            assert auth.authorize(second, 0, digest).reason is Reason.OK
        slots.close()

        # Anonymous acknowledgement of a record, as a group member.
        record_hash = hashlib.sha256(b"some record").digest()
        anonymous = acknowledge_anonymously(bob, tree, record_hash, digest)
        anonymous.check(digest)

    with RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=2) as dead, pytest.raises(RegistryClientError) as down:
        dead.group(0)
    assert down.value.code == "unreachable"


def test_named_acknowledgement() -> None:
    who = Identity("client-ack")
    record_hash = hashlib.sha256(b"record").digest()
    ack = acknowledge(record_hash, who)
    assert ack.verify() and ack.commitment() == who.commitment
    other = acknowledge(hashlib.sha256(b"other").digest(), who)
    assert other.signature != ack.signature


@pytest.mark.parametrize("relay", ["ftp://127.0.0.1:21", "closed port"])
def test_a_send_that_never_left_is_unreachable_and_spends_no_slot(relay: str, tmp_path: Path) -> None:
    """An unsupported URL scheme or a refused connection: nothing reached a relay, so the
    proof may be sent again (``unreachable``, not ``no_answer``; docs/relay.md "Retrying a send")."""
    url = f"http://127.0.0.1:{free_port()}" if relay == "closed port" else relay
    alice = Identity("client-not-sent")
    tree = LeanIMT()
    tree.insert(alice.commitment)
    slots = SendSlots(tmp_path / "slots.sqlite")
    proof, _ = build_send_authorization(alice, tree, 0, b"blob", 1_000_000.0, slots, registry=RegistryRef(31337, "0x" + "11" * 20))
    slots.close()
    with pytest.raises(RelaySendError) as caught:
        send_blob(url, b"\x01" * 32, b"\x02" * 32, b"blob", 0, proof, timeout=5)
    assert caught.value.code == "unreachable" and caught.value.status == 0
    assert not caught.value.sent and not caught.value.slot_spent


def test_a_request_timeout_given_by_a_method_reaches_a_shared_client() -> None:
    """``create_group`` waits up to 180 s (a deployment's transaction): with a client of
    its own httpx.Client (timeout 5 s) that 180 s must still be the request's timeout."""
    import httpx

    seen: list[dict[str, Any]] = []
    url = f"http://127.0.0.1:{free_port()}"
    http = httpx.Client(base_url=url, timeout=5.0, event_hooks={"request": [lambda r: seen.append(r.extensions["timeout"])]})
    with http, RegistryClient(url, client=http) as client:
        with pytest.raises(RegistryClientError) as down:
            client.create_group({}, "t" * 16)
        assert down.value.code == "unreachable"
        with pytest.raises(RegistryClientError):
            client.health()
    assert seen[0]["read"] == 180.0 and seen[1]["read"] == 5.0


def test_the_send_slots_file_is_owner_only(tmp_path: Path) -> None:
    """The slots used per epoch say when an identity sent: 0600 like the identity file."""
    from registry.client.api import SendSlots

    slots = SendSlots(tmp_path / "alice.id.slots")
    try:
        slots.claim(0, 1, 10)
        assert (tmp_path / "alice.id.slots").stat().st_mode & 0o077 == 0
    finally:
        slots.close()
