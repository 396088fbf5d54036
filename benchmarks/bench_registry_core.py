"""Registry core benchmark: indexer backfill and rebuild, outbox intake, batch anchoring.

On throw-away Anvil nodes (``--gas-limit 300000000``) with the real contracts:

1. fill group 0 with ``--backfill-members`` commitments in ``addMembers`` batches of
   ``--fill-batch``, then time a fresh backfill of an empty index (chunked ``eth_getLogs``,
   decoding, SQLite, the in-memory LeanIMT with every root checked against the events);
   membership events/s counts one per leaf added;
2. the same for ``--single-events`` one-member transactions (one ``MemberAdded`` event and
   one block each: the per-event and per-block overhead);
3. fill on to ``--rebuild-members`` and time a rebuild from an empty index;
4. on a fresh node, ``--registrations`` single-commitment registrations through
   ``RegistryService.register`` (durable outbox, fsync per registration) while the
   service threads run, and the time from the first registration until all are anchored
   (``included``, 1 confirmation) with ``--batch-size``; then the same intake from 8
   threads;
5. ``--single-tx`` members added with one transaction each through web3.py (estimate,
   sign, send, receipt), the naive alternative to batching.

Prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_registry_core [--backfill-members 20000]
        [--rebuild-members 100000] [--single-events 2000] [--registrations 5000]
        [--batch-size 1000] [--single-tx 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from registry.service.index import ChainIndex
from registry.service.indexer import Indexer
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import AnvilProcess
from registry.ledger.deploy import Manifest, deploy_contracts, open_deployment, save_manifest
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.service.facade import RegistryService
from registry.service.settings import Settings
from zk.field import R

_SPREAD = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251
GAS_PER_MEMBER = 62_000  # measured ~55.1k on Anvil, with margin (see registry.service.batcher)


def _values(start: int, n: int) -> list[int]:
    return [((i + 1) * _SPREAD) % R for i in range(start, start + n)]


def _node() -> tuple[AnvilProcess, Transactor, Manifest, RegistryContract]:
    node = AnvilProcess(["--gas-limit", "300000000"])
    tx = Transactor(node.w3, anvil_dev_account(0), poll_interval=0.005)
    manifest = deploy_contracts(tx, region="bench")
    return node, tx, manifest, open_deployment(node.w3, manifest, tx).registry


def _fill(tx: Transactor, registry: RegistryContract, start: int, count: int, batch: int) -> float:
    """Add members ``start..start+count`` in batches (all sent, then all awaited)."""
    began = time.perf_counter()
    hashes = []
    for offset in range(0, count, batch):
        values = _values(start + offset, min(batch, count - offset))
        fn = registry.contract.functions.addMembers(0, values)
        hashes.append(tx.send(fn, gas=200_000 + GAS_PER_MEMBER * len(values)))
    for h in hashes:
        tx.wait(h)
    return time.perf_counter() - began


def _backfill(tmp: Path, name: str, node: AnvilProcess, manifest: Manifest, chunk: int = 2000) -> dict[str, Any]:
    index = ChainIndex(tmp / name)
    indexer = Indexer(node.w3, manifest, index, confirmations=2, chunk=chunk)
    began = time.perf_counter()
    events = indexer.sync_once()
    seconds = time.perf_counter() - began
    size = index.tree(0).size
    assert index.tree(0).root == RegistryContract(node.w3, manifest.address("ZkIdRegistry")).root(0)
    index.close()
    return {
        "members": size,
        "events": events,
        "blocks": node.w3.eth.block_number - manifest.deployment_block + 1,
        "log_requests": indexer.stats.log_requests,
        "seconds": round(seconds, 3),
        "membership_events_per_s": round(size / seconds),
        "log_events_per_s": round(events / seconds),
    }


def bench_index(tmp: Path, backfill: int, rebuild: int, fill_batch: int) -> dict[str, Any]:
    node, tx, manifest, registry = _node()
    try:
        fill_s = _fill(tx, registry, 0, backfill, fill_batch)
        result: dict[str, Any] = {
            "fill": {"members": backfill, "batch": fill_batch, "seconds": round(fill_s, 2)},
            "backfill": _backfill(tmp, "backfill.sqlite", node, manifest),
        }
        if rebuild > backfill:
            fill_s = _fill(tx, registry, backfill, rebuild - backfill, fill_batch)
            result["fill_rest_seconds"] = round(fill_s, 2)
            result["rebuild"] = _backfill(tmp, "rebuild.sqlite", node, manifest)
        return result
    finally:
        node.stop()


def bench_single_events(tmp: Path, count: int) -> dict[str, Any]:
    node, tx, manifest, registry = _node()
    try:
        began = time.perf_counter()
        hashes = [
            tx.send(registry.contract.functions.addMember(0, v), gas=1_500_000) for v in _values(10_000_000, count)
        ]
        for h in hashes:
            tx.wait(h)
        fill_s = time.perf_counter() - began
        result = _backfill(tmp, "single.sqlite", node, manifest)
        result["fill_seconds"] = round(fill_s, 2)
        return result
    finally:
        node.stop()


def _anchored(service: RegistryService) -> int:
    """Outbox rows on chain: ``included``, or already ``final`` (with 1 confirmation a row
    can pass through ``included`` between two polls)."""
    counts = service.outbox.counts()
    return int(counts.get("included", 0)) + int(counts.get("final", 0))


def bench_intake(tmp: Path, registrations: int, batch_size: int, single_tx: int) -> dict[str, Any]:
    node, tx, manifest, registry = _node()
    data = tmp / "service"
    save_manifest(data, manifest)
    settings = Settings(
        data_dir=data, rpc_url=node.rpc_url, batch_size=batch_size, confirmations=1, poll_interval=0.1
    )
    service = RegistryService.open(settings)
    try:
        service.sync()
        service.start()  # indexer and batcher run while registrations arrive
        values = _values(20_000_000, registrations)
        began = time.perf_counter()
        for v in values:
            service.register(0, [v])
        accept_s = time.perf_counter() - began
        while _anchored(service) < registrations:
            time.sleep(0.02)
        anchored_s = time.perf_counter() - began
        service.stop()
        assert service.operator().size(0) == registrations

        # The same intake from 8 threads at once (HTTP workers): SQLite serialises writers.
        more = _values(30_000_000, registrations)
        share = [more[i::8] for i in range(8)]

        def worker(part: list[int]) -> None:
            for v in part:
                service.register(0, [v])

        threads = [threading.Thread(target=worker, args=(p,)) for p in share]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        threaded_s = time.perf_counter() - began

        # One transaction per member, the naive way (same account as the service: resync).
        tx.nonces.resync()
        naive_group = registry.create_group()
        began = time.perf_counter()
        for v in _values(40_000_000, single_tx):
            registry.add_member(naive_group, v)
        naive_s = time.perf_counter() - began
        return {
            "registrations": registrations,
            "accept_seconds": round(accept_s, 3),
            "accepted_per_s": round(registrations / accept_s),
            "accepted_per_s_8_threads": round(registrations / threaded_s),
            "batch_size": batch_size,
            "batch_interval": settings.batch_interval,
            "seconds_until_all_anchored": round(anchored_s, 2),
            "anchored_per_s": round(registrations / anchored_s),
            "transactions": service.batcher.stats.batches_sent,
            "one_tx_per_member": {
                "members": single_tx,
                "seconds": round(naive_s, 2),
                "members_per_s": round(single_tx / naive_s, 1),
            },
        }
    finally:
        service.close()
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backfill-members", type=int, default=20_000)
    parser.add_argument("--rebuild-members", type=int, default=100_000)
    parser.add_argument("--fill-batch", type=int, default=1000)
    parser.add_argument("--single-events", type=int, default=2000)
    parser.add_argument("--registrations", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--single-tx", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result = {
            "index": bench_index(tmp, args.backfill_members, args.rebuild_members, args.fill_batch),
            "single_member_events": bench_single_events(tmp, args.single_events),
            "intake": bench_intake(tmp, args.registrations, args.batch_size, args.single_tx),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
