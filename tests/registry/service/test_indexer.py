"""The indexer against a real Anvil: chunked backfill, index == chain, reorganisations,
rebuild from scratch. The index == chain and reorganisation tests run against both
backends (``database_url``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.service.index import ChainIndex, delete_index_files
from registry.service.indexer import Indexer, item_state
from registry.storage.database import open_store_database
from registry.ledger.registry_contract import RegistryContract
from tests.registry.conftest import assert_index_matches_chain, index_snapshot, make_commitments
from zk.tree import LeanIMT


def new_indexer(
    tmp_path: Path, anvil: Any, deployed: Any, name: str = "index.sqlite", chunk: int = 1000, database_url: str | None = None
) -> Indexer:
    index = ChainIndex(open_store_database(database_url, tmp_path, name, durable=False))
    return Indexer(anvil.w3, deployed.manifest, index, confirmations=2, chunk=chunk)


class Mirror:
    """Sends membership changes and keeps a local LeanIMT to compute sibling lists."""

    def __init__(self, registry: RegistryContract, group: int) -> None:
        self.registry = registry
        self.group = group
        self.tree = LeanIMT(unique=False)

    def add(self, values: list[int]) -> None:
        if len(values) == 1:
            self.registry.add_member(self.group, values[0])
        else:
            self.registry.add_members(self.group, values)
        self.tree.insert_many(values)

    def update(self, old: int, new: int) -> None:
        i = self.tree.index_of(old)
        assert i is not None
        self.registry.update_member(self.group, old, new, list(self.tree.generate_proof(i).siblings))
        self.tree.update(i, new)

    def remove(self, value: int) -> None:
        i = self.tree.index_of(value)
        assert i is not None
        self.registry.remove_member(self.group, value, list(self.tree.generate_proof(i).siblings))
        self.tree.remove(i)


def busy_history(anvil: Any, deployed: Any, make_transactor: Any, indexer: Indexer | None = None) -> None:
    """Two groups with adds (batch and single), updates, removals, a removed member added
    again, a window change and an admin transfer; the indexer syncs now and then."""
    values = make_commitments(40, seed=1000)
    g0 = Mirror(deployed.registry, 0)
    other = RegistryContract(anvil.w3, deployed.registry.address, make_transactor(1))
    g1 = Mirror(other, other.create_group(root_window=50))
    g0.add(values[0:6])
    g1.add(values[6:9])
    g0.add([values[9]])
    if indexer is not None:
        indexer.sync_once()
    g0.update(values[2], values[10])
    g0.remove(values[4])
    g1.add(values[11:18])
    g1.remove(values[6])
    g0.add(values[18:25])
    g0.add([values[4]])  # removed earlier, a member again
    if indexer is not None:
        indexer.sync_once()
    g1.update(values[12], values[25])
    other.set_root_window(g1.group, 40)
    other.transfer_admin(g1.group, make_transactor(2).address)
    RegistryContract(anvil.w3, deployed.registry.address, make_transactor(2)).accept_admin(g1.group)
    g0.remove(values[0])
    g0.update(values[5], values[26])


def test_item_state() -> None:
    assert item_state(None, 10, 2) == ("pending", 0)
    assert item_state(10, 10, 2) == ("included", 1)
    assert item_state(10, 11, 2) == ("final", 2)
    assert item_state(10, 11, 0) == ("final", 2)
    assert item_state(10, 10, 0) == ("final", 1)
    assert item_state(10, 9, 3) == ("included", 1)  # head seen before the block: not final


def test_index_equals_chain_after_many_changes(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, make_transactor: Any, database_url: str | None
) -> None:
    indexer = new_indexer(tmp_path, anvil, deployed, database_url=database_url)
    busy_history(anvil, deployed, make_transactor, indexer)
    chain.increase_time(1000)  # group 1 (window 40) now has expired roots, group 0 not
    indexer.sync_once()
    assert indexer.index.cursor == anvil.w3.eth.block_number
    assert_index_matches_chain(indexer.index, deployed.registry, anvil.w3)
    assert indexer.stats.reorgs == 0
    indexer.index.close()


def test_backfill_in_bounded_chunks_gives_the_same_index(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, make_transactor: Any
) -> None:
    busy_history(anvil, deployed, make_transactor)
    chain.mine(7)  # empty blocks in between do not matter
    head = anvil.w3.eth.block_number
    small = new_indexer(tmp_path, anvil, deployed, "small.sqlite", chunk=4)
    assert small.sync_once() > 0
    ranges = small.stats.log_ranges
    assert ranges[0][0] == deployed.manifest.deployment_block and ranges[-1][1] == head
    assert all(to - frm + 1 <= 4 for frm, to in ranges)
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in zip(ranges, ranges[1:]))  # contiguous
    big = new_indexer(tmp_path, anvil, deployed, "big.sqlite", chunk=100_000)
    big.sync_once()
    assert big.stats.log_requests == 1
    assert index_snapshot(small.index) == index_snapshot(big.index)
    assert_index_matches_chain(small.index, deployed.registry, anvil.w3)
    # nothing new: a sync reads no logs
    requests = small.stats.log_requests
    assert small.sync_once() == 0 and small.stats.log_requests == requests
    small.index.close()
    big.index.close()


def test_deleting_the_index_and_rebuilding_gives_the_same_state(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, make_transactor: Any
) -> None:
    path = tmp_path / "index.sqlite"
    indexer = new_indexer(tmp_path, anvil, deployed)
    busy_history(anvil, deployed, make_transactor, indexer)
    indexer.sync_once()
    before = index_snapshot(indexer.index)
    indexer.index.close()
    delete_index_files(path)
    assert not path.exists()
    rebuilt = new_indexer(tmp_path, anvil, deployed, chunk=3)
    rebuilt.sync_once()
    assert index_snapshot(rebuilt.index) == before
    rebuilt.index.close()
    # and reopening (trees rebuilt from the members table) too
    reopened = ChainIndex(path)
    assert index_snapshot(reopened) == before
    reopened.close()


def _calldata(registry: RegistryContract, values: list[int]) -> dict[str, Any]:
    fn = registry.contract.functions.addMembers(0, values)
    data = fn.build_transaction({"gas": 1, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1, "nonce": 0})["data"]
    assert registry.tx is not None
    return {"from": registry.tx.address, "to": registry.address, "data": data, "gas": hex(3_000_000)}


def test_reorganisation_of_the_last_blocks(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, ledger_tx: Any, database_url: str | None
) -> None:
    a, b, c, d, e = make_commitments(5, seed=5000)
    reg = deployed.registry
    indexer = new_indexer(tmp_path, anvil, deployed, database_url=database_url)
    follower = ChainIndex(open_store_database(database_url, tmp_path, "index.sqlite", durable=False))
    reg.add_members(0, [a])
    indexer.sync_once()
    kept_root = reg.root(0)
    reg.add_members(0, [b])
    reg.add_members(0, [c])
    chain.mine(1)
    indexer.sync_once()
    assert indexer.index.has_member(0, c)
    head = anvil.w3.eth.block_number
    # Replace the last 3 blocks (b's, c's and an empty one) with blocks holding d then e.
    chain.reorg(3, [(_calldata(reg, [d]), 0), (_calldata(reg, [e]), 2)])
    ledger_tx.nonces.resync()
    assert anvil.w3.eth.block_number == head
    indexer.sync_once()
    idx = indexer.index
    assert indexer.stats.reorgs == 1 and indexer.stats.last_reorg_depth >= 3
    assert not idx.has_member(0, b) and not idx.has_member(0, c)
    assert idx.has_member(0, d) and idx.has_member(0, e)
    assert idx.member(0, d) is not None and idx.member(0, d).index == 1  # type: ignore[union-attr]
    assert idx.block_hash(head) == chain.block_hash(head)
    assert_index_matches_chain(idx, reg, anvil.w3)
    # the root current before the vanished blocks was superseded again, by d's block
    assert [r.root for r in idx.roots(0)].count(kept_root) == 1
    # and a fresh index built from the new chain is identical
    fresh = new_indexer(tmp_path, anvil, deployed, "fresh.sqlite", database_url=database_url)
    fresh.sync_once()
    assert index_snapshot(fresh.index) == index_snapshot(idx)
    # a follower replica on the same database catches up by refreshing
    assert follower.refresh() is True
    assert index_snapshot(follower) == index_snapshot(idx)
    assert follower.has_member(0, e) and not follower.has_member(0, b)
    follower.close()
    idx.close()
    fresh.index.close()


def test_reorganisation_by_snapshot_revert_and_a_longer_chain(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, ledger_tx: Any
) -> None:
    a, b, c, d = make_commitments(4, seed=6000)
    reg = deployed.registry
    indexer = new_indexer(tmp_path, anvil, deployed)
    reg.add_members(0, [a])
    indexer.sync_once()
    snap = chain.snapshot()
    reg.add_members(0, [b])
    reg.add_members(0, [c])
    indexer.sync_once()
    cursor = indexer.index.cursor
    chain.revert(snap)  # the two blocks vanish: the head moves back
    ledger_tx.nonces.resync()
    assert anvil.w3.eth.block_number < cursor  # type: ignore[operator]
    reg.add_members(0, [d])
    chain.mine(3)  # the new chain is longer than the old one
    indexer.sync_once()
    idx = indexer.index
    assert indexer.stats.reorgs == 1
    assert idx.has_member(0, a) and idx.has_member(0, d)
    assert not idx.has_member(0, b) and not idx.has_member(0, c)
    assert_index_matches_chain(idx, reg, anvil.w3)
    idx.close()


def test_rolled_back_head_without_new_blocks(tmp_path: Path, anvil: Any, deployed: Any, chain: Any, ledger_tx: Any) -> None:
    a, b = make_commitments(2, seed=7000)
    reg = deployed.registry
    indexer = new_indexer(tmp_path, anvil, deployed)
    reg.add_members(0, [a])
    reg.add_members(0, [b])
    indexer.sync_once()
    chain.rollback(1)  # b's block is dropped, nothing replaces it
    ledger_tx.nonces.resync()
    indexer.sync_once()
    assert indexer.index.cursor == anvil.w3.eth.block_number
    assert indexer.index.has_member(0, a) and not indexer.index.has_member(0, b)
    assert_index_matches_chain(indexer.index, reg, anvil.w3)
    indexer.index.close()


def test_member_status_returns_to_pending_when_its_block_vanishes(service: Any, anvil: Any, chain: Any) -> None:
    x, y = make_commitments(2, seed=8000)
    service.register(0, [x, y])
    assert service.process_once(force=True) == 2
    status = service.member_status(0, x)
    assert status.status == "included" and status.confirmations == 1
    included_tx = status.tx_hash
    chain.reorg(1)  # the block with the batch is replaced by an empty one
    service.sync()
    after = service.member_status(0, x)
    assert after.status == "pending" and after.index is None and after.block_number is None
    assert service.member_status(0, y).status == "pending"
    assert service.index.tree(0).size == 0
    # The batcher notices the transaction is gone, queues the rows again and resends.
    service.process_once()  # settle: dropped -> pending
    service.process_once(force=True)  # resend
    chain.mine(1)
    service.process_once()
    final = service.member_status(0, x)
    assert final.status == "final" and final.tx_hash != included_tx
    assert service.outbox.counts()["final"] == 2, service.outbox.rows()
    assert service.index.tree(0).size == 2  # on chain once each
    assert_index_matches_chain(service.index, service.operator(), anvil.w3)


def test_fast_log_decoder_agrees_with_web3(
    tmp_path: Path, anvil: Any, deployed: Any, chain: Any, make_transactor: Any
) -> None:
    busy_history(anvil, deployed, make_transactor)
    indexer = new_indexer(tmp_path, anvil, deployed)
    raw, _ = indexer._get_logs(deployed.manifest.deployment_block, anvil.w3.eth.block_number)
    typed = anvil.w3.eth.get_logs(
        {"address": deployed.registry.address, "fromBlock": deployed.manifest.deployment_block, "toBlock": "latest"}
    )
    ours = [indexer.decoder.decode(lg) for lg in raw]
    theirs = [deployed.registry.decode_log(lg) for lg in typed]
    assert len(ours) == len(theirs) > 15
    assert {e.name for e in ours if e is not None} >= {
        "GroupCreated", "MembersAdded", "MemberAdded", "MemberUpdated", "MemberRemoved",
        "RootWindowChanged", "GroupAdminTransferStarted", "GroupAdminTransferred",
    }
    for mine, web3s in zip(ours, theirs):
        assert mine is not None and web3s is not None
        assert (mine.name, mine.args, mine.address, mine.block_number, mine.log_index) == (
            web3s.name, web3s.args, web3s.address, web3s.block_number, web3s.log_index,
        )
        assert (mine.block_hash, mine.tx_hash) == (web3s.block_hash.lower(), web3s.tx_hash.lower())
    assert indexer.decoder.decode(dict(raw[0], address="0x" + "00" * 20)) is None
    indexer.index.close()
