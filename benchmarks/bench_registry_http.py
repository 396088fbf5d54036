"""Load benchmark of the registry's HTTP API on loopback, with the load in its own process.

Setup: a throw-away Anvil, the contracts deployed into a temporary data directory, the
registry started as a real ``zkid serve`` subprocess (uvicorn, the production app), and a
load generator in a *separate* process (``load`` mode below): asyncio with raw
keep-alive HTTP/1.1 connections, so that the client costs little next to the server.

Scenarios, all in one run:

1. ``verify_bare``: the verification limit of this machine: ``zk.proof.verify_proof`` of
   the same proofs in a thread pool of ``--workers`` threads (groth16py releases the GIL).
2. ``authorize``: ``POST /v1/authorize`` with valid proofs. ``--identities`` x ``--slots``
   distinct proofs (distinct nullifiers) are generated once in a process pool (proving
   costs ~0.4 s each); each of ``--rounds`` rounds posts all of them once, and between
   rounds the registry's nullifier table is emptied (SQL ``DELETE`` on
   ``nullifiers.sqlite``) so the same proofs authorize again. Every request therefore
   runs the whole path: parsing, cheap checks, root lookup, pairing check, durable
   nullifier insert. Only ``200 authorized`` answers count as successes.
3. ``register_single`` / ``register_batch``: ``POST /v1/groups/0/members`` with one fresh
   commitment per request, and with ``--batch`` per request (registrations/s accepted,
   i.e. durably committed to the outbox).
4. ``merkle_proofs``: ``GET /v1/groups/0/proofs/{c}`` over the members registered above,
   once the batcher has anchored them and the indexer has seen them.

Usage:
    .venv/bin/python -m benchmarks.bench_registry_http [--identities 50] [--slots 20]
        [--rounds 2] [--concurrency 16] [--registrations 2000] [--proof-requests 5000]
        [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EPOCH_LENGTH = 1_000_000  # one epoch covers the whole run (proofs are made before the load)


# ---------------------------------------------------------------------------- load generator


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    close = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def _load(url: str, requests: list[bytes], concurrency: int) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    cursor = iter(range(len(requests)))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in cursor:
                t0 = time.perf_counter()
                writer.write(requests[i])
                status, close = await _read_response(reader)
                latencies.append(time.perf_counter() - t0)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"count": len(latencies), "elapsed": elapsed, "statuses": statuses, "latencies": latencies}


def _encode(host: str, method: str, path: str, body: Any | None) -> bytes:
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


def load_main(url: str, requests_file: str, concurrency: int) -> None:
    """Child process: read JSON-lines requests, run them, print one JSON result line."""
    host = urlsplit(url).netloc
    requests = []
    with open(requests_file, encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            requests.append(_encode(host, item["method"], item["path"], item.get("body")))
    result = asyncio.run(_load(url, requests, concurrency))
    sys.stdout.write(json.dumps(result) + "\n")


def run_load(url: str, items: list[dict[str, Any]], concurrency: int, workdir: Path) -> dict[str, Any]:
    path = workdir / f"requests-{secrets.token_hex(4)}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, separators=(",", ":")) + "\n")
    out = subprocess.run(
        [PYTHON, "-m", "benchmarks.bench_registry_http", "load", url, str(path), str(concurrency)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=3600,
    )
    path.unlink()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def summarize(results: list[dict[str, Any]], ok_status: str, items_per_request: int = 1) -> dict[str, Any]:
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = sum(r["elapsed"] for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    ok = statuses.get(ok_status, 0)

    def pct(p: float) -> float:
        return round(float(latencies[min(len(latencies) - 1, int(p * len(latencies)))]) * 1000, 2)

    return {
        "requests": len(latencies),
        "ok": ok,
        "statuses": statuses,
        "seconds": round(elapsed, 3),
        "per_second": round(ok * items_per_request / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


# ---------------------------------------------------------------------------- proofs


def _prove(job: tuple[int, int, dict[str, Any], int, int]) -> dict[str, Any]:
    from zk.identity import Identity
    from zk.proof import generate_proof
    from zk.relay_scope import RelayScope, blob_message
    from zk.tree import MerkleProof

    i, slot, merkle_json, epoch, group_id = job
    who = Identity(f"bench-http-{i}")
    digest = hashlib.sha256(f"blob {i} {slot}".encode()).digest()
    scope = RelayScope(group_id=group_id, epoch=epoch, slot=slot).encode()
    proof = generate_proof(who, MerkleProof.from_dict(merkle_json), blob_message(digest), scope)
    return {"group_id": group_id, "proof": proof.to_dict(), "blob_digest": digest.hex()}


def bare_verify(bodies: list[dict[str, Any]], rounds: int, workers: int) -> dict[str, Any]:
    from zk.proof import SemaphoreProof, verify_proof

    proofs = [SemaphoreProof.from_dict(b["proof"]) for b in bodies] * rounds
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(verify_proof, proofs[:workers]))  # warm the keys
        t0 = time.perf_counter()
        results = list(pool.map(verify_proof, proofs))
        elapsed = time.perf_counter() - t0
    assert all(results)
    return {"verifications": len(proofs), "seconds": round(elapsed, 3), "per_second": round(len(proofs) / elapsed, 1)}


# ---------------------------------------------------------------------------- orchestration


def _http(method: str, url: str, **kwargs: Any) -> Any:
    import httpx

    response = httpx.request(method, url, timeout=60.0, **kwargs)
    response.raise_for_status()
    return response.json()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _settled(base: str) -> bool:
    health = _http("GET", f"{base}/v1/health")
    return bool(health.get("outbox_pending") == 0 and (health.get("lag_blocks") or 0) <= 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=50)
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--registrations", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--proof-requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="Proving processes and bare-verification threads.")
    parser.add_argument("--json", action="store_true", help="Print only the JSON result.")
    args = parser.parse_args(argv)

    from registry.ledger.anvil import AnvilProcess, free_port
    from registry.ledger.accounts import anvil_dev_account
    from registry.ledger.deploy import deploy_contracts, save_manifest
    from registry.ledger.tx import Transactor
    from zk.identity import Identity
    from zk.field import R
    from zk.relay_scope import epoch_at

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "params": vars(args)}
    with tempfile.TemporaryDirectory(prefix="zkid-bench-") as tmp, AnvilProcess(["--gas-limit", "300000000"]) as anvil:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        manifest = save_manifest(data, deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0)), region="bench"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "ZKID_EPOCH_LENGTH": str(EPOCH_LENGTH),
            "ZKID_MESSAGE_LIMIT": str(max(args.slots, 1)),
            "ZKID_CONFIRMATIONS": "1",
            "ZKID_BATCH_INTERVAL": "0.5",
            "ZKID_POLL_INTERVAL": "0.2",
        }
        server_log = (work / "server.log").open("wb")
        server = subprocess.Popen(
            [PYTHON, "-m", "benchmarks.bench_registry_http", "serve", "--rpc-url", anvil.rpc_url,
             "--manifest", str(manifest), "--data-dir", str(data), "--port", str(port)],
            cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
        )
        try:
            _wait(lambda: _reachable(base), 120, "the registry to listen")
            say(f"registry up at {base} (pid {server.pid})")

            # Members for the authorization proofs, anchored before proving.
            identities = [Identity(f"bench-http-{i}") for i in range(args.identities)]
            _http("POST", f"{base}/v1/groups/0/members", json={"commitments": [str(i.commitment) for i in identities]})
            _wait(lambda: _settled(base), 300, "the identities to be anchored")
            epoch = epoch_at(time.time(), EPOCH_LENGTH)
            jobs: list[tuple[int, int, dict[str, Any], int, int]] = []
            for i, who in enumerate(identities):
                merkle = _http("GET", f"{base}/v1/groups/0/proofs/{who.commitment}")["merkle_proof"]
                jobs.extend((i, slot, merkle, epoch, 0) for slot in range(args.slots))
            say(f"proving {len(jobs)} authorizations with {args.workers} processes...")
            t0 = time.perf_counter()
            with ProcessPoolExecutor(args.workers) as pool:
                bodies = list(pool.map(_prove, jobs, chunksize=4))
            report["proving"] = {"proofs": len(bodies), "seconds": round(time.perf_counter() - t0, 1)}

            say("bare verification...")
            report["verify_bare"] = bare_verify(bodies, args.rounds, args.workers)

            say(f"authorize: {args.rounds} rounds of {len(bodies)}...")
            items = [{"method": "POST", "path": "/v1/authorize", "body": b} for b in bodies]
            nullifiers = data / "nullifiers.sqlite"
            results = []
            for _ in range(args.rounds):
                _reset_nullifiers(nullifiers)
                results.append(run_load(base, items, args.concurrency, work))
            report["authorize"] = summarize(results, "200")

            say(f"register: {args.registrations} single, {args.registrations // args.batch} x {args.batch}...")
            singles: list[dict[str, Any]] = [
                {"method": "POST", "path": "/v1/groups/0/members", "body": {"commitments": [str(secrets.randbelow(R - 1) + 1)]}}
                for _ in range(args.registrations)
            ]
            report["register_single"] = summarize([run_load(base, singles, args.concurrency, work)], "202")
            batches: list[dict[str, Any]] = [
                {"method": "POST", "path": "/v1/groups/0/members",
                 "body": {"commitments": [str(secrets.randbelow(R - 1) + 1) for _ in range(args.batch)]}}
                for _ in range(max(1, args.registrations // args.batch))
            ]
            report["register_batch"] = summarize([run_load(base, batches, args.concurrency, work)], "202", args.batch)

            say("waiting for the batcher and the indexer...")
            t0 = time.perf_counter()
            _wait(lambda: _settled(base), 900, "the registrations to be anchored")
            total = args.identities + args.registrations + len(batches) * args.batch
            report["anchoring"] = {"members": total, "seconds_after_load": round(time.perf_counter() - t0, 1)}
            members = [c for it in singles for c in it["body"]["commitments"]]
            members += [c for it in batches for c in it["body"]["commitments"]]
            gets = [
                {"method": "GET", "path": f"/v1/groups/0/proofs/{members[secrets.randbelow(len(members))]}"}
                for _ in range(args.proof_requests)
            ]
            say(f"merkle proofs: {len(gets)} requests over {len(members)} members...")
            report["merkle_proofs"] = summarize([run_load(base, gets, args.concurrency, work)], "200")
            report["group"] = _http("GET", f"{base}/v1/groups/0")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            server_log.close()
            report["server_exit_code"] = server.returncode
    return report


def _reachable(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/v1/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _reset_nullifiers(path: Path) -> None:
    with sqlite3.connect(path, timeout=30) as db:
        db.execute("DELETE FROM nullifiers")


def serve_main(argv: list[str]) -> None:
    """Child process: the real ``zkid serve`` command (registered on a private Typer app so
    this does not depend on how registry/cli/__init__.py wires its commands)."""
    import typer

    from registry.cli import service_commands

    app = typer.Typer()
    service_commands.register(app)
    app(["serve", *argv], prog_name="zkid")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_main(sys.argv[2:])
    else:
        result = main(sys.argv[1:])
        print(json.dumps(result, indent=2))
