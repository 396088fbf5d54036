"""A registration load through `zkid up` (issue #10): N registrations into the open
group 0, sent from several loopback client addresses (each within the per-IP limits),
until every one is final on chain. Reports the time, the batches, the base fee before and
after, the most any block's base fee reached, what the operator paid, and health at the end.

    python -m benchmarks.bench_registration_load [--count 100000] [--clients 16]

The local ledger is the one `zkid up` starts (its settings are the ones a user gets).
Everything runs on loopback; the load stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from registry.ledger.anvil import LocalLedger, free_port, make_web3
from registry.ledger.deploy import load_manifest
from registry.ledger.registry_contract import RegistryContract
from zk.field import R

ROOT = Path(__file__).resolve().parents[1]
_SPREAD = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251


def commitments(n: int, seed: int) -> list[int]:
    return [((i + seed) * _SPREAD) % R for i in range(n)]


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16, help="loopback source addresses 127.0.0.2...")
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="zkid-load-")) / "data"
    data_dir.mkdir()
    port, ledger_port = free_port(), free_port()
    env = {**os.environ, "ZKID_POLL_INTERVAL": "0.2", "ZKID_BATCH_INTERVAL": "1"}
    env.pop("ZKID_DATA_DIR", None)
    log = data_dir.parent / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "up", "--data-dir", str(data_dir), "--port", str(port),
             "--ledger-port", str(ledger_port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: httpx.get(f"{url}/v1/health", timeout=5).status_code == 200, 180, "zkid up")
        w3 = make_web3(f"http://127.0.0.1:{ledger_port}")
        manifest = load_manifest(data_dir)
        assert manifest is not None
        contract = RegistryContract(w3, manifest.address("ZkIdRegistry"))
        operator = w3.eth.accounts[0]
        balance_before = w3.eth.get_balance(operator)
        head_before = w3.eth.block_number
        base_before = int(w3.eth.get_block("latest")["baseFeePerGas"])

        values = commitments(args.count, seed=900_000)
        chunks = [values[i : i + args.per_request] for i in range(0, len(values), args.per_request)]
        refused: dict[int, int] = {}

        def send(i: int) -> None:
            source = f"127.0.0.{2 + i % args.clients}"
            with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=120) as c:
                body = {"commitments": [str(v) for v in chunks[i]]}
                while True:
                    r = c.post(f"{url}/v1/groups/0/members", json=body)
                    if r.status_code == 202:
                        return
                    refused[r.status_code] = refused.get(r.status_code, 0) + 1
                    if r.status_code not in (429, 503):
                        raise SystemExit(f"refused: {r.status_code} {r.text[:200]}")
                    time.sleep(float(r.headers.get("Retry-After", "1")))

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(args.clients, 8)) as pool:
            list(pool.map(send, range(len(chunks))))
        accepted_s = time.perf_counter() - t0
        wait(lambda: contract.size(0) >= args.count, args.timeout, "every registration on chain")
        anchored_s = time.perf_counter() - t0
        health = wait(
            lambda: (h := httpx.get(f"{url}/v1/health", timeout=30).json())["outbox_pending"] == 0 and h,
            120, "an empty outbox",
        )
        head = w3.eth.block_number
        fees, batches = [], 0
        for n in range(head_before + 1, head + 1):
            block = w3.eth.get_block(n)
            fees.append(int(block["baseFeePerGas"]))
            batches += len(block["transactions"])
        result = {
            "count": args.count,
            "size_on_chain": contract.size(0),
            "accept_seconds": round(accepted_s, 1),
            "anchor_seconds": round(anchored_s, 1),
            "registrations_per_second_anchored": round(args.count / anchored_s, 1),
            "transactions": batches,
            "refusals_retried": refused,
            "base_fee_gwei_before": base_before / 1e9,
            "base_fee_gwei_max": max(fees) / 1e9 if fees else None,
            "base_fee_gwei_after": int(w3.eth.get_block("latest")["baseFeePerGas"]) / 1e9,
            "operator_paid_eth": (balance_before - w3.eth.get_balance(operator)) / 1e18,
            "health": health["status"],
            "health_reasons": health.get("reasons"),
        }
        print(json.dumps(result, indent=2))
        return 0 if result["size_on_chain"] == args.count and health["status"] == "ok" else 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        LocalLedger(data_dir, ledger_port).down()


if __name__ == "__main__":
    sys.exit(main())
