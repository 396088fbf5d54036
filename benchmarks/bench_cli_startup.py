"""CLI start-up and whole-process proving: `zkid --help`, and `zkid proof generate` at depth
20 against `snarkjs groth16 fullprove` on the same ceremony artifacts and inputs, as whole
processes, interleaved in one run on one machine (medians). Prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_cli_startup [--runs 3] [--help-runs 7]

Python runs with its bytecode cache on (as an installed `zkid`), and after one untimed
`zkid proof generate` (wasmtime's compilation cache is then warm, as on any second use).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from zk.artifacts import load_artifacts
from zk.hashing import hash_message
from zk.identity import Identity
from zk.tree import LeanIMT, merkle_proof_to_circuit_inputs

ROOT = Path(__file__).resolve().parent.parent
ZKID = ROOT / ".venv" / "bin" / "zkid"
SNARKJS = ROOT / "node_modules" / ".bin" / "snarkjs"
DEPTH = 20
PASSPHRASE = "benchmark passphrase"


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - start


def run(runs: int = 3, help_runs: int = 7) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["ZKID_PASSPHRASE"] = PASSPHRASE
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        made = subprocess.run([str(ZKID), "identity", "create", "--out", "id.json", "--json"], cwd=cwd, env=env,
                              check=True, capture_output=True, text=True)
        me = json.loads(made.stdout)["commitment"]
        members = [Identity(f"bench-{i}").commitment for i in range(15)] + [int(me)]
        (cwd / "group.txt").write_text("\n".join(map(str, members)) + "\n")
        zkid = [str(ZKID), "proof", "generate", "--identity", "id.json", "--group", "group.txt",
                "--message", "benchmark message", "--scope", "benchmark scope", "--depth", str(DEPTH), "--out", "proof.json"]
        # The same circuit inputs for snarkjs (the identity's secret from the file).
        from zk.identity_file import decrypt_identity

        who = decrypt_identity((cwd / "id.json").read_bytes(), PASSPHRASE)
        tree = LeanIMT(leaves=members)
        index = tree.index_of(who.commitment)
        assert index is not None
        circuit = merkle_proof_to_circuit_inputs(tree.generate_proof(index), DEPTH)
        inputs = {
            "secret": str(who.secret_scalar),
            "merkleProofLength": str(circuit.merkle_proof_length),
            "merkleProofIndex": str(circuit.merkle_proof_index),
            "merkleProofSiblings": [str(s) for s in circuit.merkle_proof_siblings],
            "scope": str(hash_message("benchmark scope")),
            "message": str(hash_message("benchmark message")),
        }
        (cwd / "input.json").write_text(json.dumps(inputs))
        art = load_artifacts(DEPTH)
        snarkjs = [str(SNARKJS), "groth16", "fullprove", "input.json", str(art.wasm), str(art.zkey), "sj.json", "sj_public.json"]

        help_s = [_timed([str(ZKID), "--help"], cwd, env) for _ in range(help_runs + 1)][1:]
        _timed(zkid, cwd, env)  # untimed: bytecode and wasmtime caches warm
        zkid_s: list[float] = []
        snarkjs_s: list[float] = []
        for _ in range(runs):  # interleaved: both see the same machine load
            zkid_s.append(_timed(zkid, cwd, env))
            snarkjs_s.append(_timed(snarkjs, cwd, env))
        ours = json.loads((cwd / "proof.json").read_text())
        theirs = json.loads((cwd / "sj_public.json").read_text())
        same = [str(ours["merkleTreeRoot"]), str(ours["nullifier"])] == theirs[:2]
    zkid_median, snarkjs_median = statistics.median(zkid_s), statistics.median(snarkjs_s)
    return {
        "benchmark": "cli_startup",
        "depth": DEPTH,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "zkid_help_s": {"median": round(statistics.median(help_s), 3), "runs": [round(x, 3) for x in help_s]},
        "zkid_proof_generate_s": {"median": round(zkid_median, 3), "runs": [round(x, 3) for x in zkid_s]},
        "snarkjs_fullprove_s": {"median": round(snarkjs_median, 3), "runs": [round(x, 3) for x in snarkjs_s]},
        "speedup_vs_snarkjs_fullprove": round(snarkjs_median / zkid_median, 2),
        "same_root_and_nullifier": same,
        "targets": {
            "help_le_0.25_s": statistics.median(help_s) <= 0.25,
            "proof_generate_2x_faster_than_snarkjs": snarkjs_median / zkid_median >= 2,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--help-runs", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(run(args.runs, args.help_runs), indent=2))


if __name__ == "__main__":
    main()
