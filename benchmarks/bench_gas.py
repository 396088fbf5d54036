"""Gas of our contracts against the official Semaphore v4 contracts, on one Anvil, one run.

Both sides run on the same node with the same PoseidonT3 library and the same official
SemaphoreVerifier; Semaphore.sol is compiled from ``@semaphore-protocol/contracts`` by the
same solc-js 0.8.28 with the same settings (``contracts/artifacts/Semaphore.json``, built by
``scripts/build_contracts.py``). Rows:

- ``addMember`` into a group of N members (N = 0, 1, 1000, 100000; groups filled with batches
  first; both groups hold the same number of leaves, so they hash the same path);
- ``addMembers`` of 10, 100, 1000 new members, per member, into an empty group and into the
  big group of the previous rows;
- ``validateProof`` of a proof from the official JS SDK (a 3-member group; first use);
- ``createGroup``; the deployment of the main contract (one-time, informational only);
- ``anchor`` (first and following anchors of a log; no Semaphore counterpart).

Target: ours never above Semaphore. Prints one JSON object (``--markdown``: a table).
Usage: ``.venv/bin/python -m benchmarks.bench_gas [--max-size 100000] [--markdown] [--check]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from web3.contract.contract import Contract

from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.ledger.anvil import AnvilProcess
from registry.ledger.artifacts import load_artifact
from registry.ledger.deploy import deploy_contracts
from registry.ledger.registry_contract import RegistryContract, parse_proof, proof_tuple
from registry.ledger.tx import Transactor
from zk.field import R

ROOT = Path(__file__).resolve().parent.parent
C = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251
SIZES = (0, 1, 1000, 100_000)
BATCHES = (10, 100, 1000)
WINDOW = 3600


class Leaves:
    """Distinct non-zero field elements, shared by both sides (each group gets fresh ones)."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, n: int) -> list[int]:
        out = [(i * C) % R for i in range(self.next, self.next + n)]
        self.next += n
        return out


class Side:
    """One registry under test: ours or Semaphore, behind the same small interface."""

    def __init__(self, name: str, tx: Transactor, contract: Contract, create: Any) -> None:
        self.name, self.tx, self.c, self._create = name, tx, contract, create

    def gas(self, fn: Any) -> int:
        return int(self.tx.transact(fn)["gasUsed"])

    def create_group(self) -> tuple[int, int]:
        receipt = self.tx.transact(self._create())
        counter = self.c.functions.groupCounter() if self.name == "semaphore" else self.c.functions.groupCount()
        return int(counter.call()) - 1, int(receipt["gasUsed"])

    def add(self, group: int, leaf: int) -> int:
        return self.gas(self.c.functions.addMember(group, leaf))

    def add_many(self, group: int, leaves: list[int]) -> int:
        return self.gas(self.c.functions.addMembers(group, leaves))

    def fill(self, group: int, leaves: list[int]) -> None:
        # A generous fixed limit skips eth_estimateGas, which re-executes the whole batch
        # several times (its binary search) and would dominate the time spent filling.
        self.tx.transact(self.c.functions.addMembers(group, leaves), gas=80_000 * len(leaves) + 1_000_000)

    def validate(self, group: int, proof: Any) -> int:
        return self.gas(self.c.functions.validateProof(group, proof_tuple(parse_proof(proof))))


def _proof() -> dict[str, Any]:
    payload = {"memberKeys": ["bench-0", "bench-1", "bench-2"], "signer": 1, "message": "42", "scope": "7"}
    proc = subprocess.run(
        ["node", str(ROOT / "benchmarks" / "js" / "ledger_proof.mjs")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _row(name: str, ours: float, theirs: float | None, per: int = 1) -> dict[str, Any]:
    row: dict[str, Any] = {"row": name, "ours": round(ours / per, 1) if per > 1 else int(ours)}
    if theirs is not None:
        row["semaphore"] = round(theirs / per, 1) if per > 1 else int(theirs)
        row["delta"] = round(row["ours"] - row["semaphore"], 1)
        row["ok"] = row["ours"] <= row["semaphore"]
    return row


def run(max_size: int = 100_000, fill_batch: int = 1000, batches: tuple[int, ...] = BATCHES) -> dict[str, Any]:
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with AnvilProcess(["--gas-limit", "2000000000"]) as node:
        tx = Transactor(node.w3, anvil_dev_account(0), receipt_timeout=900.0, poll_interval=0.01)
        manifest = deploy_contracts(tx, region="bench")
        ours_reg = RegistryContract(node.w3, manifest.address("ZkIdRegistry"), tx)
        sem_art = load_artifact("Semaphore")
        sem_addr, sem_receipt = tx.deploy(sem_art.creation_code(manifest.libraries), sem_art.abi, [manifest.address("SemaphoreVerifier")])
        sem = node.w3.eth.contract(address=sem_addr, abi=sem_art.abi)
        ours_deploy = node.w3.eth.get_transaction_receipt(manifest.contracts["ZkIdRegistry"].tx_hash)["gasUsed"]
        # One-time cost, shown for information (not a target row): ours has more views.
        deploy_row = _row("deploy main contract (once)", ours_deploy, sem_receipt["gasUsed"])
        deploy_row.pop("ok")
        rows.append(deploy_row)

        sides = [
            Side("ours", tx, ours_reg.contract, lambda: ours_reg.contract.functions.createGroup(tx.address, WINDOW)),
            Side(
                "semaphore",
                tx,
                sem,
                lambda: sem.get_function_by_signature("createGroup(address,uint256)")(tx.address, WINDOW),
            ),
        ]
        leaves = Leaves()

        groups, gas = zip(*(s.create_group() for s in sides), strict=True)
        rows.append(_row("createGroup", gas[0], gas[1]))

        # Single adds at growing sizes, on one group per side grown in batches.
        size = 0
        for target in (s for s in SIZES if s <= max_size):
            while size < target:
                batch = leaves.take(min(fill_batch, target - size))
                for side, group in zip(sides, groups, strict=True):
                    side.fill(group, batch)
                size += len(batch)
            leaf = leaves.take(1)[0]
            gas = tuple(side.add(group, leaf) for side, group in zip(sides, groups, strict=True))
            rows.append(_row(f"addMember into a group of {target}", gas[0], gas[1]))
            size += 1

        # Batches: into an empty group (Semaphore then also stamps its first root) and into
        # the big group above (the usual case: one root stamp per batch on both sides).
        for k in batches:
            batch = leaves.take(k)
            gas = tuple(side.add_many(side.create_group()[0], batch) for side in sides)
            rows.append(_row(f"addMembers x{k}, empty group (per member)", gas[0], gas[1], per=k))
        for k in batches:
            batch = leaves.take(k)
            gas = tuple(side.add_many(group, batch) for side, group in zip(sides, groups, strict=True))
            rows.append(_row(f"addMembers x{k}, group of {size} (per member)", gas[0], gas[1], per=k))
            size += k

        js = _proof()
        commitments = [int(c) for c in js["commitments"]]
        gas_list = []
        for side in sides:
            group, _ = side.create_group()
            side.add_many(group, commitments)
            gas_list.append(side.validate(group, js["proof"]))
        rows.append(_row("validateProof (3 members, depth 2)", gas_list[0], gas_list[1]))

        anchor = AnchorContract(node.w3, manifest.address("EvidenceAnchor"), tx)
        anchor_deploy = node.w3.eth.get_transaction_receipt(manifest.contracts["EvidenceAnchor"].tx_hash)["gasUsed"]
        rows.append(_row("EvidenceAnchor: deploy (once)", anchor_deploy, None))
        log_key = b"\x07" * 32  # the log's Ed25519 public key (any 32 bytes for gas)
        fn = anchor.contract.functions.registerLog("letro-zkid/bench/evidence", log_key, tx.address, [tx.address])
        rows.append(_row("EvidenceAnchor: registerLog (one operator)", tx.transact(fn)["gasUsed"], None))
        lid = log_id("letro-zkid/bench/evidence", log_key)
        first = anchor.anchor(lid, 10, b"\x01" * 32)
        second = anchor.anchor(lid, 20, b"\x02" * 32)
        assert not isinstance(first, bytes) and not isinstance(second, bytes)
        rows.append(_row("EvidenceAnchor: anchor (first of a log)", first["gasUsed"], None))
        rows.append(_row("EvidenceAnchor: anchor (next)", second["gasUsed"], None))
        new_owner = Transactor(node.w3, anvil_dev_account(1), poll_interval=0.01)
        started_transfer = anchor.transfer_owner(lid, new_owner.address)
        accepted = AnchorContract(node.w3, anchor.address, new_owner).accept_owner(lid)
        assert not isinstance(started_transfer, bytes) and not isinstance(accepted, bytes)
        rows.append(_row("EvidenceAnchor: transferLogOwner", started_transfer["gasUsed"], None))
        rows.append(_row("EvidenceAnchor: acceptLogOwner (operators reset)", accepted["gasUsed"], None))

    compared = [r for r in rows if "ok" in r]
    return {
        "bench": "gas",
        "node": "anvil 1.7.1 (hardfork: default)",
        "compiler": "solc-js 0.8.28, optimizer runs 1000, evm cancun, same settings both sides",
        "max_size": max_size,
        "rows": rows,
        "never_worse": all(r["ok"] for r in compared),
        "seconds": round(time.monotonic() - started, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["| operation | ours (gas) | Semaphore v4 (gas) | delta |", "|---|---:|---:|---:|"]
    for r in result["rows"]:
        theirs = r.get("semaphore", "—")
        delta = r.get("delta", "—")
        lines.append(f"| {r['row']} | {r['ours']:,} | {theirs if isinstance(theirs, str) else f'{theirs:,}'} | {delta if isinstance(delta, str) else f'{delta:+,}'} |")
    lines.append("")
    lines.append(f"never worse than Semaphore: {'yes' if result['never_worse'] else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-size", type=int, default=100_000, help="largest group size for the single-add rows")
    parser.add_argument("--fill-batch", type=int, default=1000, help="batch size used to fill the groups")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="addMembers batch sizes, comma-separated")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table instead of JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if any row is worse than Semaphore")
    args = parser.parse_args(argv)
    result = run(args.max_size, args.fill_batch, tuple(int(k) for k in args.batches.split(",") if k.strip()))
    print(markdown(result) if args.markdown else json.dumps(result, indent=2))
    return 1 if args.check and not result["never_worse"] else 0


if __name__ == "__main__":
    sys.exit(main())
