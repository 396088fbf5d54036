"""The service facade end to end on a real Anvil, with real Semaphore proofs."""

from __future__ import annotations

from typing import Any

import pytest

from registry.service.authorization import Reason
from registry.ledger.registry_contract import RegistryContract
from registry.service.facade import RegistryError, RegistryService, reindex
from registry.service.settings import Settings
from tests.registry.conftest import make_commitments
from tests.support.clock import FakeClock
from tests.support.wait import wait_until
from zk.field import Q, R
from zk.identity import Identity
from zk.proof import generate_proof
from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at
from tests.support.registry import deployment_of
from zk.tree import LeanIMT


def identities(n: int, seed: int) -> list[Identity]:
    return [Identity(bytes([seed + i]) * 32) for i in range(n)]


def test_register_until_final_then_a_valid_merkle_proof(service: RegistryService, anvil: Any, chain: Any) -> None:
    members = [i.commitment for i in identities(3, 1)]
    statuses = service.register(0, members)
    assert [(s.status, s.index, s.tx_hash) for s in statuses] == [("pending", None, None)] * 3
    assert service.member_status(0, members[0]).status == "pending"
    with pytest.raises(RegistryError) as err:
        service.merkle_proof(0, members[0])
    assert (err.value.code, err.value.status) == ("pending", 409)
    assert service.health()["outbox_pending"] == 3

    service.process_once(force=True)
    first = service.member_status(0, members[2])
    assert (first.status, first.confirmations, first.index) == ("included", 1, 2)
    assert first.tx_hash is not None and first.block_number == anvil.w3.eth.block_number
    chain.mine(1)
    service.process_once()
    final = service.member_status(0, members[2])
    assert (final.status, final.confirmations) == ("final", 2)
    assert service.outbox.counts()["final"] == 3

    proof = service.merkle_proof(0, members[1])
    assert proof.leaf == members[1] and LeanIMT.verify_proof(proof)
    registry = service.operator()
    assert proof.root == registry.root(0) and registry.is_root_valid(0, proof.root)
    info = service.root_info(proof.root)
    assert info["valid"] and info["current"] and info["group_id"] == 0 and info["valid_until"] is None
    group = service.group_info(0)
    assert group["root"] == str(proof.root) and group["size"] == 3 and group["depth"] == 2
    assert group["admin"].lower() == service.operator_address.lower()
    assert group["epoch_length"] == service.settings.epoch_length and group["block"] == service.index.cursor
    assert [g["group_id"] for g in service.groups()] == [0]
    health = service.health()
    assert health["status"] == "ok" and health["ledger"] == "up" and health["lag_blocks"] == 0
    assert health["outbox_pending"] == 0 and health["chain_id"] == service.manifest.chain_id


def test_refusals_carry_codes_and_statuses(
    service: RegistryService, anvil: Any, deployed: Any, chain: Any, make_transactor: Any
) -> None:
    a, b = make_commitments(2, seed=50)

    def code(fn: Any, *args: Any) -> tuple[str, int]:
        with pytest.raises(RegistryError) as err:
            fn(*args)
        return err.value.code, err.value.status

    assert code(service.register, 99, [a]) == ("unknown_group", 404)
    assert code(service.register, 0, [R]) == ("invalid_commitment", 422)  # docs/api.md: 422
    assert code(service.register, 0, []) == ("malformed", 400)
    assert code(service.register, -1, [a]) == ("malformed", 400)
    service.register(0, [a])
    assert code(service.register, 0, [b, a]) == ("duplicate", 409)
    service.process_once(force=True)
    assert service.outbox.get(0, a).state == "sent"  # type: ignore[union-attr]
    chain.mine(1)
    service.process_once()
    assert code(service.register, 0, [a]) == ("duplicate", 409)  # a member on chain
    assert code(service.member_status, 0, b) == ("not_member", 404)
    assert code(service.member_status, 5, b) == ("unknown_group", 404)
    assert code(service.member_status, 0, 0) == ("invalid_commitment", 422)
    assert code(service.merkle_proof, 0, b) == ("not_member", 404)
    assert code(service.merkle_proof, 5, a) == ("unknown_group", 404)
    assert code(service.group_info, 5) == ("unknown_group", 404)
    assert code(service.root_info, 12345) == ("unknown_root", 404)
    assert code(service.root_info, R) == ("malformed", 400)
    assert code(service.create_group, -1) == ("malformed", 400)
    assert code(service.create_group, "60") == ("malformed", 400)
    foreign = RegistryContract(anvil.w3, deployed.registry.address, make_transactor(3)).create_group()
    service.sync()
    assert code(service.register, foreign, [b]) == ("forbidden", 403)
    assert service.outbox.get(foreign, b) is None


def test_authorize_with_real_proofs(registry_settings: Settings, anvil: Any, chain: Any) -> None:
    settings = registry_settings.model_copy(update={"epoch_length": 1_000_000, "message_limit": 3, "clock_skew": 30})
    clock = FakeClock(anvil.w3.eth.get_block("latest")["timestamp"])
    service = RegistryService.open(settings, clock=clock)
    try:
        service.sync()
        service.open_default_group()  # group 0 a send group too, as `zkid up` makes it
        group = service.create_group(root_window=60, admission={"policy": "open"})
        alice, bob, carol = identities(3, 40)
        service.register(group, [alice.commitment, bob.commitment])
        service.process_once(force=True)
        old_bob_path = service.merkle_proof(group, bob.commitment)  # against root R1

        digest, other_digest = digest_blob(b"blob one"), digest_blob(b"blob two")
        epoch = epoch_at(clock(), settings.epoch_length)

        def prove(who: Identity, path: Any, slot: int, at_epoch: int = epoch) -> dict[str, Any]:
            scope = RelayScope.of(deployment_of(service.manifest), group, at_epoch, slot).encode()
            return generate_proof(who, path, blob_message(digest), scope).to_dict()

        def reason(proof: dict[str, Any], blob: bytes = digest, gid: int = group) -> Reason:
            return service.authorize(proof, gid, blob).reason

        ok = prove(alice, service.merkle_proof(group, alice.commitment), 0)
        decision = service.authorize(ok, group, digest)
        assert decision.authorized and decision.reason is Reason.OK
        assert decision.nullifier == int(ok["nullifier"]) and decision.epoch == epoch
        assert reason(ok) is Reason.NULLIFIER_REUSED
        assert reason(ok, blob=other_digest) is Reason.MESSAGE_MISMATCH
        assert reason(ok, gid=group + 1) is Reason.UNKNOWN_GROUP
        assert reason(ok, gid=0) is Reason.WRONG_GROUP
        assert service.nullifiers.count() == 1
        clock.advance(2 * settings.epoch_length)
        assert reason(ok) is Reason.WRONG_EPOCH
        assert service.nullifiers.count() == 0  # its epoch can no longer be accepted: purged
        clock.advance(-2 * settings.epoch_length)
        off_curve = dict(ok, points=[str((int(ok["points"][0]) + 1) % Q)] + ok["points"][1:])
        assert reason(off_curve) is Reason.MALFORMED
        tampered = dict(ok, nullifier=str((int(ok["nullifier"]) + 1) % R))  # a public signal changed
        assert reason(tampered) is Reason.INVALID_PROOF
        assert reason("{not json") is Reason.MALFORMED

        assert reason(prove(alice, service.merkle_proof(group, alice.commitment), 3)) is Reason.SLOT_OUT_OF_RANGE
        elsewhere = LeanIMT(leaves=[alice.commitment, 777])
        assert reason(prove(alice, elsewhere.generate_proof(0), 1)) is Reason.UNKNOWN_ROOT

        # Carol's registration supersedes R1; a proof against R1 stays good for the window.
        service.register(group, [carol.commitment])
        service.process_once(force=True)
        r1 = service.root_info(old_bob_path.root)
        assert r1["current"] is False and r1["valid_until"] == r1["superseded_at"] + 60
        superseded = r1["superseded_at"]
        clock.now = superseded + 30
        stale = prove(bob, old_bob_path, 1, epoch_at(clock(), settings.epoch_length))
        assert reason(stale) is Reason.OK
        clock.now = superseded + 61
        assert reason(stale) is Reason.EXPIRED_ROOT
        assert service.root_info(old_bob_path.root)["valid"] is False
        chain.increase_time(int(superseded + 61 - anvil.w3.eth.get_block("latest")["timestamp"]))
        assert service.operator().is_root_valid(group, old_bob_path.root) is False  # the contract agrees

        # Nullifiers whose epoch can no longer be accepted are purged.
        assert service.nullifiers.count() == 1
        clock.advance(3 * settings.epoch_length)
        assert reason(ok) is Reason.WRONG_EPOCH
        assert service.nullifiers.count() == 0
    finally:
        service.close()


def test_background_threads_and_reindex(registry_settings: Settings, chain: Any) -> None:
    members = make_commitments(4, seed=70)
    service = RegistryService.open(registry_settings)
    try:
        service.start()
        assert service.running
        wait_until(lambda: service.index.group(0) is not None)
        service.register(0, members)
        wait_until(lambda: all(service.member_status(0, c).status == "included" for c in members))
        chain.mine(1)
        wait_until(lambda: all(service.member_status(0, c).status == "final" for c in members))
        before = service.group_info(0)
        service.reindex()  # in place, threads running
        wait_until(lambda: service.index.cursor is not None and service.index.cursor >= before["block"])
        assert service.group_info(0)["root"] == before["root"]
        service.stop()
        assert not service.running
    finally:
        service.close()
    summary = reindex(registry_settings)  # the CLI path: delete the file, rebuild
    assert summary["groups"] == 1 and summary["events"] >= 2
    again = RegistryService.open(registry_settings)
    try:
        assert again.group_info(0)["root"] == before["root"]
        assert again.member_status(0, members[0]).status == "final"
    finally:
        again.close()


def test_open_without_manifest_or_with_a_foreign_one(tmp_path: Any, anvil: Any, deployed: Any, chain: Any) -> None:
    settings = Settings(data_dir=tmp_path / "empty", rpc_url=anvil.rpc_url)
    with pytest.raises(RegistryError) as err:
        RegistryService.open(settings)
    assert err.value.code == "not_deployed"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "deployment.json").write_text("{}")
    with pytest.raises(RegistryError) as err:
        RegistryService.open(Settings(data_dir=bad, rpc_url=anvil.rpc_url))
    assert err.value.code == "not_deployed"
    from dataclasses import replace

    from registry.ledger.deploy import save_manifest

    other = tmp_path / "other"
    save_manifest(other, replace(deployed.manifest, genesis_hash="0x" + "00" * 32))
    with pytest.raises(RegistryError) as err:
        RegistryService.open(Settings(data_dir=other, rpc_url=anvil.rpc_url))
    assert err.value.code == "deployment_mismatch"


def test_open_while_the_ledger_is_down(tmp_path: Any, deployed: Any, chain: Any) -> None:
    from registry.ledger.anvil import free_port
    from registry.ledger.deploy import save_manifest

    data = tmp_path / "data"
    save_manifest(data, deployed.manifest)
    settings = Settings(data_dir=data, rpc_url=f"http://127.0.0.1:{free_port()}")
    service = RegistryService.open(settings)  # works: nothing here needs the ledger
    try:
        health = service.health()
        assert (health["status"], health["ledger"], health["head_block"]) == ("degraded", "down", None)
        for call, args in ((service.sync, ()), (service.create_group, (60,))):
            with pytest.raises(RegistryError) as err:
                call(*args)
            assert (err.value.code, err.value.status) == ("ledger_unavailable", 503)
        with pytest.raises(RegistryError) as err:
            service.register(0, [5])  # nothing indexed yet: the group is not known
        assert err.value.code == "unknown_group"
    finally:
        service.close()


def test_keystore_account(tmp_path: Any, anvil: Any, deployed: Any, chain: Any, monkeypatch: Any) -> None:
    from eth_account import Account

    from registry.ledger.accounts import PASSWORD_ENV, write_keystore
    from registry.ledger.deploy import save_manifest

    account = Account.create()
    keystore = write_keystore(tmp_path / "key.json", account, "pass", iterations=2)
    data = tmp_path / "data"
    save_manifest(data, deployed.manifest)
    settings = Settings(data_dir=data, rpc_url=anvil.rpc_url, keystore=keystore)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(RegistryError) as err:
        RegistryService.open(settings)
    assert (err.value.code, err.value.status) == ("not_configured", 503)
    with pytest.raises(RegistryError) as err:
        RegistryService.open(settings, password="wrong")
    assert err.value.code == "not_configured"
    monkeypatch.setenv(PASSWORD_ENV, "pass")
    service = RegistryService.open(settings)
    try:
        service.sync()
        assert service.operator_address == account.address
        with pytest.raises(RegistryError) as err:
            service.register(0, [5])  # group 0 belongs to the deployer, not to this account
        assert (err.value.code, err.value.status) == ("forbidden", 403)
    finally:
        service.close()
