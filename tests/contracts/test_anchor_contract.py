"""EvidenceAnchor on a real Anvil: key-bound log ids, registrar-only registration, two-step
owner transfer, operators, strictly growing sizes, lookups, events."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from registry.ledger import errors as E
from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.ledger.deploy import Deployment

pytestmark = pytest.mark.usefixtures("chain")

ORIGIN = "relay.example/evidence/1"
KEY = hashlib.sha256(b"the log's Ed25519 public key").digest()
LID = log_id(ORIGIN, KEY)


def root(n: int) -> bytes:
    return hashlib.sha256(f"root {n}".encode()).digest()


def as_(deployed: Deployment, tx: Any) -> AnchorContract:
    return AnchorContract(deployed.anchor.w3, deployed.anchor.address, tx)


def test_anchor_lookups_and_events(deployed: Deployment) -> None:
    anchor = deployed.anchor
    lid = anchor.register_log(ORIGIN, KEY)
    assert lid == LID == keccak(encode(["string", "bytes32"], [ORIGIN, KEY]))
    assert bytes(anchor.contract.functions.logIdOf(ORIGIN, KEY).call()) == LID
    assert anchor.latest_anchor(LID) is None and anchor.anchors(LID) == []
    receipts = [anchor.anchor(LID, size, root(size)) for size in (3, 10, 11)]
    info = anchor.log_info(lid)
    assert (info.owner, info.latest_size, info.anchor_count) == (deployed.manifest.deployer, 11, 3)

    ten = anchor.get_anchor(LID, 10)
    assert ten is not None
    block = anchor.w3.eth.get_block(receipts[1]["blockNumber"])
    assert (ten.root_hash, ten.timestamp, ten.block_number, ten.previous_size) == (
        root(10),
        block["timestamp"],
        block["number"],
        3,
    )
    assert anchor.get_anchor(lid, 4) is None
    assert [a.tree_size for a in anchor.anchors(LID)] == [11, 10, 3]
    assert [a.tree_size for a in anchor.anchors(LID, limit=2)] == [11, 10]
    latest = anchor.latest_anchor(LID)
    assert latest is not None and latest.root_hash == root(11)

    events = anchor.anchor_events(LID, deployed.manifest.deployment_block)
    assert [(e.args["treeSize"], e.args["rootHash"]) for e in events] == [(s, root(s)) for s in (3, 10, 11)]
    assert events[0].args["logId"] == lid
    assert events[1].args["timestamp"] == ten.timestamp
    registered = anchor.events(deployed.manifest.deployment_block, names=["LogRegistered", "OperatorSet"])
    assert [e.name for e in registered] == ["LogRegistered", "OperatorSet"]
    assert (registered[0].args["origin"], registered[0].args["logKey"]) == (ORIGIN, KEY)
    # The same name under another key is another log: nothing of the first one leaks.
    other = log_id(ORIGIN, root(99))
    with pytest.raises(E.LogNotRegistered):
        anchor.log_info(other)
    with pytest.raises(ValueError, match="32-byte id"):
        anchor.get_anchor(ORIGIN, 3)  # type: ignore[arg-type]  # names are not ids any more


def test_sizes_must_grow(deployed: Deployment) -> None:
    anchor = deployed.anchor
    anchor.register_log(ORIGIN, KEY)
    anchor.anchor(LID, 10, root(10))
    for size in (10, 9, 0):
        with pytest.raises(E.TreeSizeNotGrowing) as info:
            anchor.anchor(LID, size, root(size))
        assert info.value.args_dict == {"logId": LID, "latestSize": 10, "treeSize": size}
    with pytest.raises(E.RootHashIsZero):
        anchor.anchor(LID, 11, bytes(32))
    with pytest.raises(ValueError):
        anchor.anchor(LID, 11, b"short")
    with pytest.raises(ValueError):
        anchor.anchor(LID, 2**64, root(1))
    anchor.anchor(LID, 11, root(11))


def test_only_the_registrar_registers_so_a_log_name_cannot_be_squatted(
    deployed: Deployment, make_transactor: Any
) -> None:
    """Registration was first come, first served; anyone could take a
    log's name first and anchor size 2^64-1, and the real log could never anchor again."""
    registrar = deployed.anchor
    squatter_tx = make_transactor(7)
    squatter = as_(deployed, squatter_tx)
    assert registrar.registrar() == deployed.manifest.deployer
    name = "letro-zkid/test/evidence"
    for key in (KEY, root(1)):  # the real key (public) or a key of the squatter's own
        with pytest.raises(E.CallerIsNotRegistrar) as info:
            squatter.register_log(name, key, operators=[squatter_tx.address])
        assert info.value.args_dict == {"caller": squatter_tx.address}
        with pytest.raises(E.LogNotRegistered):
            squatter.anchor(log_id(name, key), 2**64 - 1, root(1))
    # The real log is registered by the registrar (for its own account or another one) and works.
    real_tx = make_transactor(8)
    lid = registrar.register_log(name, KEY, owner=real_tx.address)
    real = as_(deployed, real_tx)
    assert real.log_info(lid).owner == real_tx.address and real.is_operator(lid, real_tx.address)
    assert not registrar.is_operator(lid, registrar.tx.address)  # type: ignore[union-attr]
    with pytest.raises(E.CallerIsNotOperator):
        squatter.anchor(lid, 2**64 - 1, root(1))
    real.anchor(lid, 5, root(5))
    with pytest.raises(E.LogAlreadyRegistered):
        registrar.register_log(name, KEY, owner=squatter_tx.address)
    assert real.log_info(lid).owner == real_tx.address


def test_operator_access_control(deployed: Deployment, make_transactor: Any) -> None:
    owner = deployed.anchor
    alice_tx, bob_tx = make_transactor(1), make_transactor(2)
    alice, bob = as_(deployed, alice_tx), as_(deployed, bob_tx)
    owner.register_log(ORIGIN, KEY, operators=[alice_tx.address])
    assert owner.is_operator(LID, alice_tx.address) and not owner.is_operator(LID, owner.tx.address)  # type: ignore[union-attr]

    with pytest.raises(E.CallerIsNotOperator) as info:
        owner.anchor(LID, 1, root(1))
    assert info.value.args_dict["caller"] == owner.tx.address  # type: ignore[union-attr]
    alice.anchor(LID, 1, root(1))
    with pytest.raises(E.CallerIsNotOperator):
        bob.anchor(LID, 2, root(2))

    with pytest.raises(E.CallerIsNotLogOwner):
        alice.set_operator(LID, bob_tx.address)
    owner.set_operator(LID, bob_tx.address)
    bob.anchor(LID, 2, root(2))
    owner.set_operator(LID, alice_tx.address, enabled=False)
    with pytest.raises(E.CallerIsNotOperator):
        alice.anchor(LID, 3, root(3))


def test_two_step_owner_transfer_resets_operators(deployed: Deployment, make_transactor: Any) -> None:
    """The transfer was one step and old operators kept their rights."""
    owner = deployed.anchor
    owner_address = owner.tx.address  # type: ignore[union-attr]
    alice_tx, bob_tx, carol_tx = make_transactor(1), make_transactor(2), make_transactor(4)
    alice, bob, carol = as_(deployed, alice_tx), as_(deployed, bob_tx), as_(deployed, carol_tx)
    owner.register_log(ORIGIN, KEY, operators=[owner_address, bob_tx.address])
    bob.anchor(LID, 1, root(1))

    owner.transfer_owner(LID, alice_tx.address)  # step 1: nothing changes yet
    assert owner.pending_owner(LID) == alice_tx.address
    assert owner.log_info(LID).owner == owner_address
    bob.anchor(LID, 2, root(2))
    owner.set_operator(LID, carol_tx.address)
    with pytest.raises(E.CallerIsNotPendingLogOwner) as info:
        carol.accept_owner(LID)  # only the pending owner may accept
    assert info.value.args_dict == {"logId": LID, "caller": carol_tx.address}
    with pytest.raises(E.CallerIsNotLogOwner):
        alice.transfer_owner(LID, alice_tx.address)

    alice.accept_owner(LID)  # step 2
    assert owner.log_info(LID).owner == alice_tx.address and owner.pending_owner(LID) is None
    with pytest.raises(E.CallerIsNotPendingLogOwner):
        alice.accept_owner(LID)  # no second acceptance
    # The old owner and every operator it named lose their rights.
    with pytest.raises(E.CallerIsNotLogOwner):
        owner.set_operator(LID, owner_address)
    with pytest.raises(E.CallerIsNotLogOwner):
        owner.transfer_owner(LID, owner_address)
    for old in (owner, bob, carol):
        assert not old.is_operator(LID, old.tx.address)  # type: ignore[union-attr]
        with pytest.raises(E.CallerIsNotOperator):
            old.anchor(LID, 3, root(3))
    alice.set_operator(LID, alice_tx.address)
    alice.anchor(LID, 3, root(3))
    assert [a.tree_size for a in alice.anchors(LID)] == [3, 2, 1]  # the history stays

    # A pending transfer can be replaced or cancelled (the zero address); then nobody accepts.
    alice.transfer_owner(LID, bob_tx.address)
    alice.transfer_owner(LID, "0x" + "00" * 20)
    assert alice.pending_owner(LID) is None
    with pytest.raises(E.CallerIsNotPendingLogOwner):
        bob.accept_owner(LID)
    names = [e.name for e in owner.events(deployed.manifest.deployment_block,
                                          names=["LogOwnerTransferStarted", "LogOwnerTransferred"])]
    assert names == ["LogOwnerTransferStarted", "LogOwnerTransferred", "LogOwnerTransferStarted",
                     "LogOwnerTransferStarted"]


def test_log_registration_rules(deployed: Deployment) -> None:
    anchor = deployed.anchor
    anchor.register_log(ORIGIN, KEY)
    with pytest.raises(E.LogAlreadyRegistered):
        anchor.register_log(ORIGIN, KEY)
    never = log_id("never.registered", KEY)
    for call in (
        lambda: anchor.anchor(never, 1, root(1)),
        lambda: anchor.log_info(never),
        lambda: anchor.set_operator(never, anchor.address),
        lambda: anchor.transfer_owner(never, anchor.address),
        lambda: anchor.latest_anchor(never),
    ):
        with pytest.raises(E.LogNotRegistered):
            call()
    assert not anchor.is_operator(never, anchor.tx.address)  # type: ignore[union-attr]
    for bad in (lambda: anchor.register_log("", KEY), lambda: log_id(ORIGIN, b"too short")):
        with pytest.raises(ValueError):
            bad()
    # The contract's own checks, bypassing the wrapper's.
    me = anchor.tx.address  # type: ignore[union-attr]
    fn = anchor.contract.functions
    for direct, error in (
        (fn.registerLog("", KEY, me, []), E.EmptyOrigin),
        (fn.registerLog("x", bytes(32), me, []), E.LogKeyIsZero),
        (fn.registerLog("x", KEY, "0x" + "00" * 20, []), E.OwnerIsZeroAddress),
    ):
        with pytest.raises(error):
            anchor.tx.transact(direct)  # type: ignore[union-attr]
