"""LeanIMT benchmark: build a large tree with insert_many, time proofs, compare with Node.

Builds the same tree (leaf i = (i + 1) * C mod r) with ``zk.tree.LeanIMT`` and with
``@zk-kit/lean-imt`` 2.2.5 + poseidon-lite in Node (``benchmarks/js/tree_build.mjs``),
checks both roots agree, and prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_tree [--size 1000000] [--proofs 10000] [--no-node]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from zk import poseidon
from zk.field import R
from zk.tree import LeanIMT

ROOT = Path(__file__).resolve().parent.parent
C = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251


def _leaves(size: int) -> list[int]:
    return [(i + 1) * C % R for i in range(size)]


def _median_us(samples: list[int]) -> float:
    return round(statistics.median(samples) / 1000, 2)


def _node(size: int, proofs: int) -> dict[str, Any] | None:
    try:
        proc = subprocess.run(
            ["node", str(ROOT / "benchmarks" / "js" / "tree_build.mjs")],
            input=json.dumps({"size": size, "proofs": proofs}),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=3600,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def run(size: int = 1_000_000, proofs: int = 10_000, node: bool = True) -> dict[str, Any]:
    leaves = _leaves(size)

    start = time.perf_counter()
    tree = LeanIMT(leaves=leaves)
    build_s = time.perf_counter() - start
    built_root = tree.root  # before the single-leaf changes below

    rng = random.Random(1)
    indices = [rng.randrange(size) for _ in range(proofs)]
    proof_ns, verify_ns = [], []
    for i in indices:
        t0 = time.perf_counter_ns()
        proof = tree.generate_proof(i)
        t1 = time.perf_counter_ns()
        ok = LeanIMT.verify_proof(proof)
        t2 = time.perf_counter_ns()
        assert ok
        proof_ns.append(t1 - t0)
        verify_ns.append(t2 - t1)

    # Single-leaf changes on the full tree (one path each).
    changes = min(200, size)
    insert_ns, update_ns = [], []
    for k in range(changes):
        t0 = time.perf_counter_ns()
        tree.insert(R - 1 - k)
        insert_ns.append(time.perf_counter_ns() - t0)
        t0 = time.perf_counter_ns()
        tree.update(indices[k % len(indices)], R - 1 - changes - k)
        update_ns.append(time.perf_counter_ns() - t0)

    start = time.perf_counter()
    exported = tree.export()
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    LeanIMT.import_(exported, verify=False)
    import_s = time.perf_counter() - start

    results: dict[str, Any] = {
        "benchmark": "lean_imt",
        "size": size,
        "poseidon_backend": poseidon.BACKEND,
        "build_insert_many_s": round(build_s, 2),
        "depth": (size - 1).bit_length(),
        "generate_proof_median_us": _median_us(proof_ns),
        "generate_proof_p99_us": round(sorted(proof_ns)[int(len(proof_ns) * 0.99)] / 1000, 2),
        "verify_proof_median_us": _median_us(verify_ns),
        "insert_one_median_us": _median_us(insert_ns),
        "update_one_median_us": _median_us(update_ns),
        "export_s": round(export_s, 2),
        "export_mb": round(len(exported) / 1e6, 1),
        "import_unverified_s": round(import_s, 2),
        "proof_samples": proofs,
    }
    if node:
        peer = _node(size, proofs)
        if peer is not None:
            results["node_lean_imt"] = {
                "build_s": round(peer["build_seconds"], 2),
                "generate_proof_median_us": round(peer["generate_proof_median_us"], 2),
                "generate_proof_p99_us": round(peer["generate_proof_p99_us"], 2),
            }
            results["roots_agree"] = peer["root"] == str(built_root)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=10_000)
    parser.add_argument("--no-node", action="store_true", help="skip the Node comparison")
    args = parser.parse_args()
    print(json.dumps(run(args.size, args.proofs, node=not args.no_node), indent=2))


if __name__ == "__main__":
    main()
