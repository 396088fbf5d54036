"""Semaphore proof benchmark at depth 20 on the official ceremony artifacts.

In one run: our witness (wasmtime) + prove (groth16py), median of N; the snarkjs CLI
``groth16 fullprove`` and ``groth16 verify`` on the same inputs (and our proof); snarkjs
in one Node process (no start-up); our verification (fast, and threaded throughput);
the py_ecc reference verifier (a few runs). Prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_proof [--runs 10] [--cli-runs 3] [--ref-runs 3] [--no-node]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zk.artifacts import load_artifacts
from zk.groth16 import Proof, get_backend
from zk.groth16.fast import default_backend
from zk.hashing import hash_message
from zk.identity import Identity
from zk.proof import generate_proof, public_signals, verify_proof
from zk.tree import LeanIMT, merkle_proof_to_circuit_inputs
from zk.witness import semaphore_calculator

ROOT = Path(__file__).resolve().parent.parent
SNARKJS = ROOT / "node_modules" / ".bin" / "snarkjs"
DEPTH = 20


def _median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SNARKJS), *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=600)


def run(runs: int = 10, cli_runs: int = 3, ref_runs: int = 3, node: bool = True) -> dict[str, Any]:
    members = [Identity(f"bench-{i}") for i in range(16)]
    group = LeanIMT(leaves=[m.commitment for m in members])
    me = members[5]
    message, scope = "benchmark message", "benchmark scope"

    start = time.perf_counter()
    proof = generate_proof(me, group, message, scope, DEPTH)
    cold = time.perf_counter() - start

    index = group.index_of(me.commitment)
    assert index is not None
    circuit = merkle_proof_to_circuit_inputs(group.generate_proof(index), DEPTH)
    inputs: dict[str, Any] = {
        "secret": me.secret_scalar,
        "merkleProofLength": circuit.merkle_proof_length,
        "merkleProofIndex": circuit.merkle_proof_index,
        "merkleProofSiblings": circuit.merkle_proof_siblings,
        "scope": hash_message(scope),
        "message": hash_message(message),
    }
    calc = semaphore_calculator(DEPTH)
    fast = default_backend()
    wtns = calc.calculate_wtns(inputs)

    witness_s = _median(lambda: calc.calculate_wtns(inputs), runs)
    prove_only_s = _median(lambda: fast.prove(DEPTH, wtns), runs)
    witness_prove_s = _median(lambda: fast.prove(DEPTH, calc.calculate_wtns(inputs)), runs)
    api_s = _median(lambda: generate_proof(me, group, message, scope, DEPTH), runs)

    groth16 = Proof.from_points(proof.points)
    signals = public_signals(proof)
    assert signals is not None
    verify_s = _median(lambda: fast.verify(DEPTH, groth16, signals), 300)
    verify_api_s = _median(lambda: verify_proof(proof), 300)
    batch = [(DEPTH, groth16, signals)] * 600
    start = time.perf_counter()
    assert all(fast.verify_many(batch))
    verify_many_per_s = len(batch) / (time.perf_counter() - start)
    reference = get_backend("reference")
    reference.verify(DEPTH, groth16, signals)  # load and check the key
    reference_s = _median(lambda: reference.verify(DEPTH, groth16, signals), ref_runs)

    result: dict[str, Any] = {
        "benchmark": "semaphore_proof",
        "depth": DEPTH,
        "witness_size": calc.witness_size,
        "runs": runs,
        "python": {
            "first_proof_cold_s": round(cold, 3),
            "witness_s": round(witness_s, 4),
            "prove_from_witness_s": round(prove_only_s, 4),
            "witness_plus_prove_s": round(witness_prove_s, 4),
            "generate_proof_api_s": round(api_s, 4),
            "verify_fast_ms": round(verify_s * 1000, 3),
            "verify_proof_api_ms": round(verify_api_s * 1000, 3),
            "verify_many_per_s": round(verify_many_per_s),
            "verify_reference_s": round(reference_s, 3),
        },
    }

    if node:
        art = load_artifacts(DEPTH)
        js_inputs = {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in inputs.items()}
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            (cwd / "input.json").write_text(json.dumps(js_inputs))
            full = ["groth16", "fullprove", "input.json", str(art.wasm), str(art.zkey), "proof.json", "public.json"]
            fullprove_s = _median(lambda: _cli(full, cwd), cli_runs)
            js_verify = ["groth16", "verify", str(art.vkey), "public.json", "proof.json"]
            cli_verify_s = _median(lambda: _cli(js_verify, cwd), cli_runs)
            js_signals = json.loads((cwd / "public.json").read_text())
            # Our proof, verified by the snarkjs CLI.
            (cwd / "ours.json").write_text(json.dumps(groth16.to_snarkjs()))
            (cwd / "ours_public.json").write_text(json.dumps([str(s) for s in signals]))
            ours_ok = "OK" in _cli(["groth16", "verify", str(art.vkey), "ours_public.json", "ours.json"], cwd).stdout
        proc = subprocess.run(
            ["node", str(ROOT / "benchmarks" / "js" / "proof_bench.mjs")],
            input=json.dumps({"depth": DEPTH, "inputs": js_inputs, "runs": max(3, cli_runs)}),
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
            timeout=600,
        )
        in_process = json.loads(proc.stdout)
        result["snarkjs"] = {
            "cli_fullprove_s": round(fullprove_s, 3),
            "cli_verify_s": round(cli_verify_s, 3),
            "in_process_fullprove_s": round(in_process["fullprove_s"], 3),
            "in_process_verify_ms": round(in_process["verify_s"] * 1000, 2),
            "same_public_signals": js_signals == [str(s) for s in signals],
            "verifies_our_proof": ours_ok,
        }
        result["speedup_vs_cli_fullprove"] = round(fullprove_s / witness_prove_s, 2)
        result["speedup_vs_in_process_fullprove"] = round(in_process["fullprove_s"] / witness_prove_s, 2)
        result["targets"] = {
            "prove_le_0.3_s": witness_prove_s <= 0.3,
            "prove_4x_faster_than_snarkjs_cli": fullprove_s / witness_prove_s >= 4,
            "verify_le_2_ms": verify_s <= 0.002,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--ref-runs", type=int, default=3)
    parser.add_argument("--no-node", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.runs, args.cli_runs, args.ref_runs, not args.no_node), indent=2))


if __name__ == "__main__":
    main()
