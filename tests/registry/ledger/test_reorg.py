"""The chain-control helpers of tests/fixtures/anvil.py that indexer tests rely on."""

from __future__ import annotations

from typing import Any

import pytest

from registry.ledger.deploy import Deployment

pytestmark = pytest.mark.usefixtures("chain")


def test_reorg_replaces_a_block_with_registry_events(deployed: Deployment, chain: Any) -> None:
    reg = deployed.registry
    reg.add_member(0, 1)
    root_before = reg.root(0)
    receipt = reg.add_member(0, 2)
    height = receipt["blockNumber"]
    old_hash = chain.block_hash(height)
    assert [e.name for e in reg.events(height, height)] == ["MemberAdded"]

    # Replace the last block by one holding a different registry transaction.
    assert reg.tx is not None
    tx = reg.tx
    tx.nonces.resync()
    replaced_nonce = reg.w3.eth.get_transaction(receipt["transactionHash"])["nonce"]
    built = reg.contract.functions.addMember(0, 3).build_transaction(
        {
            "from": tx.address,
            "gas": 300_000,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
            "nonce": replaced_nonce,
            "chainId": tx.chain_id,
        }
    )
    raw = tx.account.sign_transaction(built).raw_transaction
    chain.reorg(1, [(raw, 0)])

    assert chain.head()[0] == height and chain.block_hash(height) != old_hash
    (event,) = reg.events(height, height)
    assert event.args["commitment"] == 3 and event.block_hash == chain.block_hash(height)
    assert reg.has_member(0, 3) and not reg.has_member(0, 2)
    assert reg.root(0) != root_before

    # An empty reorg and a rollback.
    chain.reorg(1)
    assert reg.root(0) == root_before and reg.events(height, height) == []
    chain.rollback(1)
    assert chain.head()[0] == height - 1
    tx.nonces.resync()
    reg.add_member(0, 4)  # the chain goes on from the new head
    assert reg.has_member(0, 4)


def test_time_and_snapshots(anvil: Any, chain: Any) -> None:
    start = anvil.w3.eth.get_block("latest")["timestamp"]
    snap = chain.snapshot()
    chain.increase_time(3600)
    assert anvil.w3.eth.get_block("latest")["timestamp"] >= start + 3600
    chain.revert(snap)
    chain.mine()
    assert anvil.w3.eth.get_block("latest")["timestamp"] < start + 3600
