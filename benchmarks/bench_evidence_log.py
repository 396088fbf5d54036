"""Evidence log throughput through the HTTP API, and the gas cost of anchoring.

- Appends/s: the registry's evidence routes (``registry.web.routes.evidence``) served by
  uvicorn on loopback, fed by a *separate client process* that pre-signs the records
  (signing is not timed) and POSTs them to ``/v1/evidence/batch`` in batches of
  ``--batch`` with ``--concurrency`` requests in flight. Every record is parsed,
  EIP-712-hashed, signature-recovered and committed (WAL, synchronous=FULL) before the
  201; a batch's signatures are checked in ``--verify-workers`` processes, as in the
  registry (:mod:`registry.evidence.verify_workers`). Also measured: single-record
  ``POST /v1/evidence`` (one request per record).
- Gas: a throw-away Anvil with the contracts deployed; ``--anchors`` anchors of the
  growing log; gas per anchor (first and later) and per 1,000 records at that anchoring
  rate (one anchor covers any number of records, so this falls as anchors get rarer).

Prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_evidence_log [--records N] [--batch B]
        [--concurrency C] [--single N] [--anchors K] [--verify-workers W]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = hashlib.sha256(b"bench evidence relay").digest()


def _signed_json(n: int, start: int) -> list[dict[str, Any]]:
    from eth_account import Account

    from zk.evidence.record import EventType, EvidenceRecord, sign_record

    issuer = Account.from_key(KEY).address
    out = []
    for i in range(start, start + n):
        rec = EvidenceRecord(chain_id=31337, event=EventType.RELAY_ACCEPTANCE, event_time=1_700_000_000 + i,
                             issuer=issuer, blob_digest=hashlib.sha256(b"bench blob %d" % i).digest(),
                             region="bench")
        out.append(sign_record(rec, KEY).to_dict())
    return out


def client(url: str, records: int, batch: int, concurrency: int, single: int) -> dict[str, Any]:
    """Runs in its own process: POST pre-signed records, time it."""
    import httpx

    docs = _signed_json(records + single, 0)
    batches = [docs[i : i + batch] for i in range(0, records, batch)]
    bodies = [json.dumps({"records": b}).encode() for b in batches]
    import socket

    # TCP_NODELAY: without it, a small request body written after its headers waits for
    # the server's delayed ACK (~40 ms per request on Linux loopback).
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                    limits=httpx.Limits(max_connections=concurrency))
    http = httpx.Client(base_url=url, timeout=120.0, transport=transport)

    def post(body: bytes) -> int:
        r = http.post("/v1/evidence/batch", content=body, headers={"content-type": "application/json"})
        if r.status_code != 201:
            raise RuntimeError(f"batch refused: {r.status_code} {r.text[:200]}")
        return len(r.json()["results"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = sum(pool.map(post, bodies))
    batch_s = time.perf_counter() - start
    start = time.perf_counter()
    for doc in docs[records:]:
        r = http.post("/v1/evidence", content=json.dumps(doc).encode())
        if r.status_code != 201:
            raise RuntimeError(f"append refused: {r.status_code}")
    single_s = time.perf_counter() - start
    return {
        "batch_records": done,
        "batch_seconds": round(batch_s, 3),
        "batch_appends_per_s": round(done / batch_s, 1),
        "single_records": single,
        "single_appends_per_s": round(single / single_s, 1) if single else None,
    }


def run(records: int, batch: int, concurrency: int, single: int, anchors: int, verify_workers: int | None = None) -> dict[str, Any]:
    from fastapi import FastAPI

    from registry.evidence.anchorer import Anchorer
    from registry.evidence.verify_workers import VerifyWorkers
    from registry.web.routes.evidence import evidence_router
    from registry.evidence.log import EvidenceLog, load_or_create_log_key
    from registry.ledger.accounts import anvil_dev_account
    from registry.ledger.anvil import AnvilProcess
    from registry.ledger.deploy import deploy_contracts, open_deployment
    from registry.ledger.tx import Transactor
    from tests.support.net import serve_app as serve

    origin = "letro-zkid/bench/evidence"
    with tempfile.TemporaryDirectory() as tmp, AnvilProcess() as anvil:
        log = EvidenceLog(Path(tmp) / "evidence.sqlite", load_or_create_log_key(tmp, origin), origin)
        app = FastAPI()
        from eth_account import Account

        from registry.evidence.admission import EvidenceAdmission

        # The registry's admission checks run (a known relay; its rate limit out of the way).
        admission = EvidenceAdmission(31337, [Account.from_key(KEY).address], log, rate=1e9, burst=10**9,
                                      clock=lambda: 1_700_100_000.0)  # the records' era
        # Large batches' signatures checked in worker processes, as the registry's app does.
        workers = VerifyWorkers(verify_workers)
        workers.start()
        app.include_router(evidence_router(log, admission=admission, workers=workers))
        try:
            with serve(app) as url:
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.bench_evidence_log", "--client", url, "--records", str(records),
                     "--batch", str(batch), "--concurrency", str(concurrency), "--single", str(single)],
                    cwd=ROOT, capture_output=True, text=True, check=True,
                )
        finally:
            workers.close()
        http_figures = json.loads(proc.stdout)
        assert log.size == records + single

        tx = Transactor(anvil.w3, anvil_dev_account(0), poll_interval=0.01)
        deployment = open_deployment(anvil.w3, deploy_contracts(tx, region="bench"), tx)
        lid = deployment.anchor.register_log(origin, log.verifier.public_key)
        anchorer = Anchorer(log, deployment.anchor, min_interval=0, min_growth=1)
        gas: list[int] = []
        # Anchor the log as if it had been anchored while growing: one per ``step`` records
        # (the same transaction the Anchorer sends; it then finds the ledger up to date).
        step = max(1, log.size // anchors)
        for k in range(1, anchors + 1):
            size = log.size if k == anchors else k * step
            receipt = deployment.anchor.anchor(lid, size, log.root(size))
            gas.append(int(receipt["gasUsed"]))  # type: ignore[call-overload]
        assert anchorer.anchor_once(force=True).status == "up_to_date"
        later = gas[1:] or gas
        per_anchor_later = sum(later) / len(later)
        log.close()
    return {
        "benchmark": "evidence_log",
        "http": {**http_figures, "batch_size": batch, "concurrency": concurrency, "verify_workers": workers.processes},
        "target_appends_per_s": 5000,
        "gas": {
            "first_anchor": gas[0],
            "later_anchor_mean": round(per_anchor_later),
            "records_per_anchor": step,
            "per_1000_records": round(per_anchor_later * 1000 / step, 1),
            "per_1000_records_if_one_anchor_per_1000": round(per_anchor_later),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--single", type=int, default=500)
    p.add_argument("--anchors", type=int, default=5)
    p.add_argument("--verify-workers", type=int, default=None,
                   help="Signature-checking processes of the server (default: one per CPU; 0: none, in the request thread).")
    p.add_argument("--client", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.client:
        print(json.dumps(client(a.client, a.records, a.batch, a.concurrency, a.single)))
        return
    print(json.dumps(run(a.records, a.batch, a.concurrency, a.single, a.anchors, a.verify_workers), indent=2))


if __name__ == "__main__":
    main()
