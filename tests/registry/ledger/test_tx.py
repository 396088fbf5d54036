"""The transaction layer on a real Anvil: nonces in flight, confirmations, revert decoding."""

from __future__ import annotations

from typing import Any

import pytest

from registry.ledger import errors as E
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import free_port, make_web3
from registry.ledger.deploy import Deployment
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor

pytestmark = pytest.mark.usefixtures("chain")


def test_many_transactions_in_flight(deployed: Deployment, anvil: Any) -> None:
    reg = deployed.registry
    tx = reg.tx
    assert tx is not None
    start = anvil.w3.eth.get_transaction_count(tx.address)
    hashes = [reg.add_member(0, 1000 + i, wait=False) for i in range(6)]
    receipts = [tx.wait(h) for h in hashes]
    nonces = [anvil.w3.eth.get_transaction(h)["nonce"] for h in hashes]
    assert nonces == list(range(start, start + 6))
    assert all(r["status"] == 1 for r in receipts)
    assert reg.size(0) == 6
    more = tx.transact_many([reg.contract.functions.addMember(0, 2000 + i) for i in range(3)])
    assert len(more) == 3 and reg.size(0) == 9


def test_confirmations(deployed: Deployment, anvil: Any) -> None:
    tx3 = Transactor(anvil.w3, anvil_dev_account(3), confirmations=3, receipt_timeout=1.0, poll_interval=0.01)
    anvil.transactors.append(tx3)
    reg = RegistryContract(anvil.w3, deployed.registry.address, tx3)
    group = deployed.registry.create_group(tx3.address)
    tx_hash = reg.add_member(group, 5, wait=False)
    with pytest.raises(E.TransactionFailed, match="fewer than 3 confirmations"):
        tx3.wait(tx_hash)  # automine made one block only
    anvil.control.mine(2)
    receipt = tx3.wait(tx_hash)
    assert anvil.w3.eth.block_number - receipt["blockNumber"] + 1 == 3
    with pytest.raises(ValueError):
        Transactor(anvil.w3, anvil_dev_account(3), confirmations=0)


def test_revert_at_estimate_uses_no_nonce(deployed: Deployment, anvil: Any) -> None:
    tx = deployed.registry.tx
    assert tx is not None
    before = anvil.w3.eth.get_transaction_count(tx.address)
    with pytest.raises(E.LeafCannotBeZero):
        deployed.registry.add_member(0, 0)
    deployed.registry.add_member(0, 1)
    assert anvil.w3.eth.get_transaction(
        anvil.w3.eth.get_block("latest")["transactions"][0]
    )["nonce"] == before


def test_mined_revert_is_decoded(deployed: Deployment, make_transactor: Any) -> None:
    other_tx = make_transactor(4)
    fn = deployed.registry.contract.functions.addMember(0, 77)
    tx_hash = other_tx.send(fn, gas=200_000)  # a fixed gas limit skips the estimate
    with pytest.raises(E.CallerIsNotAdmin) as info:
        other_tx.wait(tx_hash)
    assert info.value.args_dict["caller"] == other_tx.address
    receipt = other_tx.w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 0


def test_out_of_gas_is_reported(deployed: Deployment) -> None:
    tx = deployed.registry.tx
    assert tx is not None
    tx_hash = tx.send(deployed.registry.contract.functions.addMembers(0, list(range(1, 40))), gas=60_000)
    with pytest.raises(E.TransactionFailed, match="out of gas"):
        tx.wait(tx_hash)


def test_nonce_resync_after_a_foreign_transaction(anvil: Any, deployed: Deployment) -> None:
    mine = Transactor(anvil.w3, anvil_dev_account(5), poll_interval=0.01)
    twin = Transactor(anvil.w3, anvil_dev_account(5), poll_interval=0.01)
    anvil.transactors.extend([mine, twin])
    payment = {"to": anvil_dev_account(6).address}
    mine.transact(payment, value=1)
    twin.transact(payment, value=1)  # same key, other counter: mine's next nonce is now stale
    with pytest.raises(E.TransactionFailed, match="refused"):
        mine.transact(payment, value=1)
    mine.transact(payment, value=1)  # resynchronised after the refusal
    assert anvil.w3.eth.get_transaction_count(mine.address) == 3


def test_unreachable_node() -> None:
    w3 = make_web3(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    tx = Transactor(w3, anvil_dev_account(0))
    with pytest.raises(E.LedgerUnavailable):
        _ = tx.chain_id


def test_node_refusals_are_typed(anvil: Any, deployed: Deployment) -> None:
    from eth_account import Account

    broke = Transactor(anvil.w3, Account.create("ledger-test-broke"))
    with pytest.raises(E.TransactionFailed, match="refused"):
        broke.transact({"to": anvil_dev_account(6).address}, value=10**18)
