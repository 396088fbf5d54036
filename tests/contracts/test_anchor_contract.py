"""EvidenceAnchor on a real Anvil: operators, strictly growing sizes, lookups, events."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from eth_utils import keccak

from registry.ledger import errors as E
from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.ledger.deploy import Deployment

pytestmark = pytest.mark.usefixtures("chain")

ORIGIN = "relay.example/evidence/1"


def root(n: int) -> bytes:
    return hashlib.sha256(f"root {n}".encode()).digest()


def test_anchor_lookups_and_events(deployed: Deployment) -> None:
    anchor = deployed.anchor
    lid = anchor.register_log(ORIGIN)
    assert lid == keccak(text=ORIGIN) == log_id(ORIGIN)
    assert anchor.latest_anchor(ORIGIN) is None and anchor.anchors(ORIGIN) == []
    receipts = [anchor.anchor(ORIGIN, size, root(size)) for size in (3, 10, 11)]
    info = anchor.log_info(lid)
    assert (info.owner, info.latest_size, info.anchor_count) == (deployed.manifest.deployer, 11, 3)

    ten = anchor.get_anchor(ORIGIN, 10)
    assert ten is not None
    block = anchor.w3.eth.get_block(receipts[1]["blockNumber"])
    assert (ten.root_hash, ten.timestamp, ten.block_number, ten.previous_size) == (
        root(10),
        block["timestamp"],
        block["number"],
        3,
    )
    assert anchor.get_anchor(lid, 4) is None
    assert [a.tree_size for a in anchor.anchors(ORIGIN)] == [11, 10, 3]
    assert [a.tree_size for a in anchor.anchors(ORIGIN, limit=2)] == [11, 10]
    latest = anchor.latest_anchor(ORIGIN)
    assert latest is not None and latest.root_hash == root(11)

    events = anchor.anchor_events(ORIGIN, deployed.manifest.deployment_block)
    assert [(e.args["treeSize"], e.args["rootHash"]) for e in events] == [(s, root(s)) for s in (3, 10, 11)]
    assert events[0].args["logId"] == lid
    assert events[1].args["timestamp"] == ten.timestamp
    registered = anchor.events(deployed.manifest.deployment_block, names=["LogRegistered", "OperatorSet"])
    assert [e.name for e in registered] == ["LogRegistered", "OperatorSet"]
    assert registered[0].args["origin"] == ORIGIN


def test_sizes_must_grow(deployed: Deployment) -> None:
    anchor = deployed.anchor
    anchor.register_log(ORIGIN)
    anchor.anchor(ORIGIN, 10, root(10))
    for size in (10, 9, 0):
        with pytest.raises(E.TreeSizeNotGrowing) as info:
            anchor.anchor(ORIGIN, size, root(size))
        assert info.value.args_dict == {"logId": log_id(ORIGIN), "latestSize": 10, "treeSize": size}
    with pytest.raises(E.RootHashIsZero):
        anchor.anchor(ORIGIN, 11, bytes(32))
    with pytest.raises(ValueError):
        anchor.anchor(ORIGIN, 11, b"short")
    with pytest.raises(ValueError):
        anchor.anchor(ORIGIN, 2**64, root(1))
    anchor.anchor(ORIGIN, 11, root(11))


def test_operator_access_control(deployed: Deployment, make_transactor: Any) -> None:
    owner = deployed.anchor
    alice_tx, bob_tx = make_transactor(1), make_transactor(2)
    alice = AnchorContract(owner.w3, owner.address, alice_tx)
    bob = AnchorContract(owner.w3, owner.address, bob_tx)
    owner.register_log(ORIGIN, operators=[alice_tx.address])
    assert owner.is_operator(ORIGIN, alice_tx.address) and not owner.is_operator(ORIGIN, owner.tx.address)  # type: ignore[union-attr]

    with pytest.raises(E.CallerIsNotOperator) as info:
        owner.anchor(ORIGIN, 1, root(1))
    assert info.value.args_dict["caller"] == owner.tx.address  # type: ignore[union-attr]
    alice.anchor(ORIGIN, 1, root(1))
    with pytest.raises(E.CallerIsNotOperator):
        bob.anchor(ORIGIN, 2, root(2))

    with pytest.raises(E.CallerIsNotLogOwner):
        alice.set_operator(ORIGIN, bob_tx.address)
    owner.set_operator(ORIGIN, bob_tx.address)
    bob.anchor(ORIGIN, 2, root(2))
    owner.set_operator(ORIGIN, alice_tx.address, enabled=False)
    with pytest.raises(E.CallerIsNotOperator):
        alice.anchor(ORIGIN, 3, root(3))

    # Ownership moves; the old owner loses control.
    with pytest.raises(E.OwnerIsZeroAddress):
        owner.transfer_owner(ORIGIN, "0x" + "00" * 20)
    owner.transfer_owner(ORIGIN, alice_tx.address)
    with pytest.raises(E.CallerIsNotLogOwner):
        owner.set_operator(ORIGIN, owner.tx.address)  # type: ignore[union-attr]
    alice.set_operator(ORIGIN, alice_tx.address)
    alice.anchor(ORIGIN, 3, root(3))


def test_log_registration_rules(deployed: Deployment) -> None:
    anchor = deployed.anchor
    anchor.register_log(ORIGIN)
    with pytest.raises(E.LogAlreadyRegistered):
        anchor.register_log(ORIGIN)
    for call in (
        lambda: anchor.anchor("never.registered", 1, root(1)),
        lambda: anchor.log_info("never.registered"),
        lambda: anchor.set_operator("never.registered", anchor.address),
        lambda: anchor.latest_anchor("never.registered"),
    ):
        with pytest.raises(E.LogNotRegistered):
            call()
    with pytest.raises(ValueError):
        anchor.register_log("")
    with pytest.raises(E.EmptyOrigin):  # the contract's own check, bypassing the wrapper's
        anchor.tx.transact(anchor.contract.functions.registerLog("", []))  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        log_id(b"too short")
