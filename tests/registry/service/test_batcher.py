"""The batcher against a real Anvil: batching by size and age, crash reconciliation, a
ledger that goes down and comes back (an Anvil process of our own with persisted state)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hexbytes import HexBytes

from registry.service.batcher import Batcher
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import LocalLedger, free_port, make_web3
from registry.ledger.deploy import deploy_contracts, save_manifest
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.service.outbox import Outbox
from registry.service.facade import RegistryService
from registry.service.settings import Settings
from tests.registry.conftest import make_commitments
from tests.support.clock import FakeClock
from tests.support.wait import wait_until


def chain_additions(registry: RegistryContract, group: int, from_block: int) -> Counter[int]:
    """How many times each commitment was added to ``group`` on chain (all add events)."""
    counts: Counter[int] = Counter()
    for ev in registry.group_events(group, from_block):
        if ev.name == "MembersAdded":
            counts.update(int(c) for c in ev.args["commitments"])
        elif ev.name == "MemberAdded":
            counts[int(ev.args["commitment"])] += 1
    return counts


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


@pytest.mark.parametrize(("n", "batch_size"), [(25, 10), (7, 7)])
def test_batches_by_size_then_by_age(
    tmp_path: Path, deployed: Any, chain: Any, n: int, batch_size: int
) -> None:
    clock = FakeClock(1_000.0)
    box = Outbox(tmp_path / "o.sqlite", clock=clock)
    values = make_commitments(n, seed=100 + n)
    box.enqueue(0, values)
    batcher = Batcher(box, deployed.registry, batch_size=batch_size, batch_interval=60, confirmations=2, clock=clock)
    full = (n // batch_size) * batch_size
    assert batcher.step() == full  # only full batches go at once
    assert box.counts()["pending"] == n - full
    clock.advance(30)
    assert batcher.step() == 0  # the rest is not old enough yet
    clock.advance(31)
    assert batcher.step() == n - full
    chain.mine(1)
    batcher.settle()
    rows = box.rows()
    assert all(r.state == "final" for r in rows)
    hashes = {r.tx_hash for r in rows}
    assert len(hashes) == math.ceil(n / batch_size) == batcher.stats.batches_sent
    w3 = deployed.registry.w3
    sizes = sorted(
        len(ev.args["commitments"])
        for h in hashes
        for ev in deployed.registry.decode_receipt(w3.eth.get_transaction_receipt(h))
        if ev.name == "MembersAdded"
    )
    assert sizes == sorted([batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else []))
    assert chain_additions(deployed.registry, 0, deployed.manifest.deployment_block) == Counter(values)
    box.close()


def test_a_batch_larger_than_a_block_is_split(outbox: Outbox, deployed: Any, chain: Any) -> None:
    values = make_commitments(25, seed=300)
    outbox.enqueue(0, values)
    batcher = Batcher(outbox, deployed.registry, batch_size=100, batch_interval=60)
    batcher._gas_limit = 1_000_000  # a small block: its gas target (half) holds (500k - base) / per member = 5 per tx
    assert batcher.step(force=True) == 25
    assert batcher.stats.batches_sent == 5
    assert chain_additions(deployed.registry, 0, deployed.manifest.deployment_block) == Counter(values)


def test_a_stop_ends_the_run_between_batches(outbox: Outbox, deployed: Any, chain: Any) -> None:
    """A stop while a backlog of batches is being sent ends the run after the batch in
    flight, not after the whole backlog; the rest stays pending for the next start."""
    import threading

    outbox.enqueue(0, make_commitments(40, seed=350))
    batcher = Batcher(outbox, deployed.registry, batch_size=5, batch_interval=60, batch_min_size=1)
    stop = threading.Event()
    send = batcher._send_batch

    def send_then_stop(group_id: int, rows: Any) -> int:
        sent = send(group_id, rows)
        stop.set()  # the stop arrives while the first batch is being sent
        return sent

    batcher._send_batch = send_then_stop  # type: ignore[method-assign]
    runner = threading.Thread(target=batcher.run, args=(stop,))
    runner.start()
    runner.join(60)
    assert not runner.is_alive()
    assert batcher.stats.batches_sent == 1
    assert outbox.counts()["pending"] == 35


def test_members_already_on_chain_are_filtered_before_sending(outbox: Outbox, deployed: Any, chain: Any) -> None:
    a, b, c = make_commitments(3, seed=400)
    outbox.enqueue(0, [a, b, c])
    deployed.registry.add_members(0, [b])  # added meanwhile by someone else
    batcher = Batcher(outbox, deployed.registry, batch_size=10, batch_interval=60)
    assert batcher.step(force=True) == 2
    assert batcher.stats.skipped_on_chain == 1 and batcher.stats.batches_sent == 1
    chain.mine(2)
    batcher.settle()
    assert outbox.counts()["final"] == 3
    assert chain_additions(deployed.registry, 0, deployed.manifest.deployment_block) == Counter([a, b, c])


def test_not_our_group_fails_for_good(outbox: Outbox, anvil: Any, deployed: Any, chain: Any, make_transactor: Any) -> None:
    foreign = RegistryContract(anvil.w3, deployed.registry.address, make_transactor(3)).create_group()
    outbox.enqueue(foreign, make_commitments(2, seed=500))
    outbox.enqueue(0, make_commitments(1, seed=510))
    batcher = Batcher(outbox, deployed.registry, batch_size=10, batch_interval=60)
    batcher.step(force=True)
    assert outbox.counts() == {"pending": 0, "sent": 1, "included": 0, "final": 0, "failed": 2}
    assert all("CallerIsNotAdmin" in (r.last_error or "") for r in outbox.rows("failed"))


def _send_without_bookkeeping(box: Outbox, registry: RegistryContract, group: int) -> str:
    """What a batcher does up to the broadcast, then it 'crashes' (no mark_sent)."""
    rows = box.take_pending(group, 1000)
    box.mark_attempt([r.id for r in rows])
    assert registry.tx is not None
    tx_hash = registry.tx.send(registry.contract.functions.addMembers(group, [r.commitment for r in rows]))
    return HexBytes(tx_hash).to_0x_hex()


def test_crash_after_broadcast_before_bookkeeping(tmp_path: Path, deployed: Any, chain: Any, ledger_tx: Any) -> None:
    path = tmp_path / "outbox.sqlite"
    values = make_commitments(12, seed=600)
    box = Outbox(path)
    box.enqueue(0, values[:9])
    _send_without_bookkeeping(box, deployed.registry, 0)
    box.enqueue(0, values[9:])  # accepted before the crash, never attempted
    box.close()  # crash: the rows of the sent batch are still 'pending'

    ledger_tx.nonces.resync()
    reopened = Outbox(path)
    assert {r.state for r in reopened.rows()} == {"pending"}
    batcher = Batcher(reopened, deployed.registry, batch_size=50, batch_interval=60)
    report = batcher.reconcile()
    assert report["found_on_chain"] == 9
    assert batcher.step(force=True) == 3  # only the never-sent rows
    assert batcher.stats.batches_sent == 1
    chain.mine(2)
    batcher.settle()
    assert reopened.counts()["final"] == 12
    assert chain_additions(deployed.registry, 0, deployed.manifest.deployment_block) == Counter(values)
    assert deployed.registry.size(0) == 12
    reopened.close()


def test_crash_recovery_of_the_service_adopts_the_transaction(registry_settings: Settings, chain: Any) -> None:
    values = make_commitments(8, seed=700)
    svc = RegistryService.open(registry_settings)
    svc.sync()
    svc.register(0, values)
    tx_hash = _send_without_bookkeeping(svc.outbox, svc.operator(), 0)
    svc.close()  # the process dies here

    svc = RegistryService.open(registry_settings)
    try:
        svc.process_once(force=True)  # reconcile at start, then a normal pass
        chain.mine(2)
        svc.process_once()
        assert svc.batcher.stats.batches_sent == 0
        assert {r.state for r in svc.outbox.rows()} == {"final"}
        assert {r.tx_hash for r in svc.outbox.rows()} == {tx_hash}  # found through the index
        statuses = [svc.member_status(0, v) for v in values]
        assert {s.status for s in statuses} == {"final"} and {s.tx_hash for s in statuses} == {tx_hash}
        registry = svc.operator()
        assert chain_additions(registry, 0, svc.manifest.deployment_block) == Counter(values)
    finally:
        svc.close()


def test_ledger_down_registrations_accepted_then_anchored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    ledger = LocalLedger(data, port)
    status, _ = ledger.up()
    try:
        assert status.rpc_url is not None
        w3 = make_web3(status.rpc_url)
        save_manifest(data, deploy_contracts(Transactor(w3, anvil_dev_account(0), poll_interval=0.01)))
        settings = Settings(
            data_dir=data, ledger_port=port, confirmations=1, batch_size=5, batch_interval=0.1, poll_interval=0.05
        )
        svc = RegistryService.open(settings)
        svc.batcher.max_backoff = 0.5
        svc.indexer.max_backoff = 0.5
        svc.start()
        try:
            first = make_commitments(3, seed=800)
            later = make_commitments(4, seed=900)
            wait_until(lambda: svc.index.group(0) is not None)
            svc.register(0, first)
            wait_until(lambda: all(svc.member_status(0, c).status == "final" for c in first))

            ledger.down()
            assert svc.health()["ledger"] == "down" and svc.health()["status"] == "degraded"
            statuses = svc.register(0, later)  # still accepted
            assert [s.status for s in statuses] == ["pending"] * 4
            wait_until(lambda: svc.batcher.stats.errors > 0)  # it tried and backs off
            assert all(svc.member_status(0, c).status == "pending" for c in later)

            ledger.up()
            wait_until(lambda: all(svc.member_status(0, c).status == "final" for c in later), timeout=60)
            assert svc.health()["ledger"] == "up"
            registry = svc.operator()
            additions = chain_additions(registry, 0, svc.manifest.deployment_block)
            assert additions == Counter(first + later)
            # the index sees the members first; the batcher settles its rows on its next pass
            wait_until(lambda: svc.outbox.counts()["final"] == 7)
        finally:
            svc.close()
    finally:
        ledger.down()


def _fill(registry: RegistryContract, group: int, n: int, seed: int, step: int = 500) -> list[int]:
    values = make_commitments(n, seed=seed)
    assert registry.tx is not None
    for i in range(0, n, step):
        registry.tx.transact(registry.contract.functions.addMembers(group, values[i : i + step]))
    return values


def test_single_registration_into_a_large_group_is_anchored(outbox: Outbox, deployed: Any, chain: Any) -> None:
    """One member into a group of 5,000 costs far more than a fixed per-member limit
    (LeanIMT insertion hashes one node per level): the batcher's gas comes from the node's
    estimate, so the registration lands instead of reverting out of gas."""
    _fill(deployed.registry, 0, 5_000, seed=70_000)
    (value,) = make_commitments(1, seed=79_999)
    outbox.enqueue(0, [value])
    batcher = Batcher(outbox, deployed.registry, batch_size=50, batch_interval=60, confirmations=1)
    assert batcher.step(force=True) == 1
    batcher.wait_sent()
    batcher.settle()
    (row,) = outbox.rows()
    assert row.state == "final", row
    receipt = deployed.registry.w3.eth.get_transaction_receipt(row.tx_hash)
    assert receipt["status"] == 1 and receipt["gasUsed"] > 150_000 + 70_000  # the old fixed limit
    assert deployed.registry.size(0) == 5_001 and deployed.registry.has_member(0, value)


def test_out_of_gas_revert_is_recognised_and_resent_with_more_gas(
    outbox: Outbox, deployed: Any, chain: Any
) -> None:
    _fill(deployed.registry, 0, 1_000, seed=81_000)
    values = make_commitments(3, seed=82_000)
    outbox.enqueue(0, values)
    batcher = Batcher(outbox, deployed.registry, batch_size=50, batch_interval=60, confirmations=1)
    batcher.gas_boost = 0.4  # injected fault: a limit well under the estimate (a stale one)
    for _ in range(8):
        batcher.step(force=True)
        batcher.wait_sent()
        batcher.settle()
        if outbox.counts()["final"] == 3:
            break
    assert outbox.counts()["final"] == 3
    assert batcher.stats.failures["out_of_gas"] >= 1 and batcher.stats.failed == 0
    assert batcher.gas_boost > 0.4
    start = deployed.manifest.deployment_block
    assert chain_additions(deployed.registry, 0, start) == Counter(
        {**{v: 1 for v in values}, **{v: 1 for v in make_commitments(1_000, seed=81_000)}}
    )


def test_out_of_gas_mined_transaction_is_typed(deployed: Any, chain: Any) -> None:
    """EIP-150 keeps 1/64 of the gas from inner calls: the receipt's gasUsed stays under the
    limit, and only a replay with more gas shows it was an out-of-gas revert."""
    from registry.ledger.errors import OutOfGas

    _fill(deployed.registry, 0, 1_000, seed=83_000)
    reg = deployed.registry
    fn = reg.contract.functions.addMembers(0, make_commitments(1, seed=84_000))
    tx_hash = reg.tx.send(fn, gas=150_000)
    with pytest.raises(OutOfGas):
        reg.tx.wait(tx_hash)


def test_final_rows_are_sent_again_after_a_deep_reorganisation(service: Any, anvil: Any, chain: Any) -> None:
    """A rollback below ``final`` rows (a reorg deeper than the confirmations, or a ledger
    restored from an older state) reopens them: they are sent again, exactly once."""
    values = make_commitments(3, seed=85_000)
    service.register(0, values)
    assert service.process_once(force=True) == 3
    chain.mine(3)
    service.process_once()
    first = service.member_status(0, values[0])
    assert first.status == "final"
    assert service.outbox.counts()["final"] == 3
    chain.reorg(4)  # the batch's block and the three after it are replaced
    service.sync()
    gone = service.member_status(0, values[0])
    assert gone.status == "pending" and gone.tx_hash is None  # not the vanished transaction
    for _ in range(6):
        service.process_once(force=True)
        chain.mine(2)
        service.process_once()
        if service.outbox.counts()["final"] == 3 and service.member_status(0, values[0]).status == "final":
            break
    again = service.member_status(0, values[0])
    assert again.status == "final" and again.tx_hash != first.tx_hash
    assert anvil.w3.eth.get_transaction_receipt(again.tx_hash)["status"] == 1
    counts = chain_additions(service.operator(), 0, service.manifest.deployment_block)
    assert all(counts[v] == 1 for v in values)
    assert service.batcher.stats.reopened >= 3


def _floored_batcher(path: Path, registry: RegistryContract) -> tuple[FakeClock, Outbox, Batcher]:
    """An outbox and a batcher on a fake clock with a k-anonymity floor of 6 registrations
    (batch_min_size) that a batch waits for at most 100 s (batch_max_wait)."""
    clock = FakeClock(1_000.0)
    box = Outbox(path, clock=clock)
    batcher = Batcher(
        box, registry, batch_size=50, batch_interval=2, batch_min_size=6, batch_max_wait=100, confirmations=1, clock=clock
    )
    return clock, box, batcher


def test_batches_wait_for_the_k_anonymity_floor_and_hide_arrival_order(tmp_path: Path, deployed: Any, chain: Any) -> None:
    """docs/privacy.md "Batches": fewer than batch_min_size registrations wait (until
    batch_max_wait); a batch goes on chain in outbox id order (random per request), not
    in arrival order."""
    clock, box, batcher = _floored_batcher(tmp_path / "o.sqlite", deployed.registry)
    values = make_commitments(7, seed=4242)
    rows = [box.enqueue(0, [v])[0] for v in values[:5]]  # five requests, one after the other
    clock.advance(5)
    assert batcher.step() == 0  # 5 < the floor of 6
    rows.append(box.enqueue(0, [values[5]])[0])
    assert batcher.step() == 6
    [tx] = {r.tx_hash for r in box.rows("sent")}
    [added] = [
        ev for ev in deployed.registry.decode_receipt(deployed.registry.w3.eth.get_transaction_receipt(tx))
        if ev.name == "MembersAdded"
    ]
    on_chain = [int(c) for c in added.args["commitments"]]
    assert on_chain == [r.commitment for r in sorted(rows, key=lambda r: r.id)]
    assert sorted(on_chain) == sorted(values[:6])
    # A lone registration goes once it waited batch_max_wait.
    box.enqueue(0, [values[6]])
    clock.advance(50)
    assert batcher.step() == 0
    clock.advance(51)
    assert batcher.step() == 1
    box.close()


def test_a_registration_arriving_while_a_batch_is_in_flight_waits_for_its_own_floor(
    tmp_path: Path, deployed: Any, chain: Any
) -> None:
    """docs/privacy.md "Batches": the wait that lets a small batch go (batch_max_wait)
    counts from the oldest *pending* registration. It counted from the group's oldest
    registration not yet on chain, sent ones included, so one arriving while a batch was
    in flight (broadcast, not mined) went at once in a batch of its own: under a steady
    trickle every registration did, and the floor was void."""
    clock, box, batcher = _floored_batcher(tmp_path / "o.sqlite", deployed.registry)
    values = make_commitments(3, seed=4343)
    box.enqueue(0, [values[0]])
    clock.advance(101)
    assert batcher.send_due() == 1  # a lone registration after batch_max_wait: now in flight
    assert [r.state for r in box.rows()] == ["sent"]
    box.enqueue(0, [values[1]])  # arrives while that batch is in flight
    clock.advance(5)
    assert batcher.step() == 0  # 1 < the floor, and it waited 5 s, not 106
    assert box.get(0, values[1]).state == "pending"
    box.enqueue(0, [values[2]])
    clock.advance(96)  # values[1] has now waited batch_max_wait: both go together
    assert batcher.step() == 2
    box.close()


def test_add_members_calldata_is_what_web3_encodes() -> None:
    """The batcher encodes addMembers with eth_abi at once (web3's contract-function path
    costs far more CPU for a large batch): byte for byte what web3's contract function
    builds, for a batch of the largest field elements too."""
    from web3 import Web3

    from registry.ledger.artifacts import load_artifact
    from registry.service.batcher import add_members_tx
    from zk.field import R

    address = "0x" + "ab" * 20
    contract = Web3().eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("ZkIdRegistry").abi)
    for group_id, values in ((0, [1]), (7, make_commitments(300, seed=77)), (2**53 - 1, [R - 1, 1, R - 2])):
        tx = add_members_tx(address, group_id, values)
        assert tx["to"] == contract.address
        assert HexBytes(tx["data"]) == HexBytes(contract.encode_abi("addMembers", args=[group_id, values]))
