"""Load benchmark of the registry's HTTP API on loopback, with the load in its own process.

Setup: a throw-away Anvil, the contracts deployed into a temporary data directory, the
registry started as a real ``zkid serve`` subprocess (uvicorn, the production app), and a
load generator in a *separate* process (``load`` mode below): asyncio with raw
keep-alive HTTP/1.1 connections, so that the client costs little next to the server.

The server runs with an operator token (group 0 is set ``open`` with it), loopback
exempt from the per-IP limits (one load generator stands for many clients) and no
k-anonymity floor per batch. Readiness is what the next step needs: each member's Merkle
proof answering 200 (:func:`wait_for_proofs`), not a settled-looking ``/v1/health``.

Scenarios, all in one run:

1. ``verify_bare``: the verification limit of this machine: ``zk.proof.verify_proof`` of
   the same proofs in a thread pool of ``--workers`` threads (groth16py releases the GIL).
2. ``authorize_load``: ``POST /v1/authorize`` with valid proofs at each offered load of
   ``--loads`` (requests kept in flight). ``--identities`` x ``--slots`` distinct proofs
   (distinct nullifiers) are generated once in a process pool (~0.4 s each); at each load,
   each of ``--rounds`` rounds posts all of them once, the registry's nullifier table
   emptied before each round (SQL ``DELETE`` on ``nullifiers.sqlite``) so every request
   runs the whole path: parsing, cheap checks, root lookup, pairing check, durable
   nullifier insert. Only ``200 authorized`` answers count. ``authorize`` is the point at
   ``--concurrency`` (or the best one).
3. ``register_single_load``: ``POST /v1/groups/0/members``, one fresh commitment per
   request, ``--registrations`` at each offered load (registrations/s accepted, i.e.
   durably committed to the outbox); ``register_batch``: ``--batch`` per request.
4. ``merkle_proofs``: ``GET /v1/groups/0/proofs/{c}`` over the members registered above,
   once every one of them answers.

Each load point carries ``server_cpu_ms_per_request`` (the server process's CPU, all its
threads, per request). ``--out x.json`` writes the JSON and, next to it, the load
profiles ``x.authorize.png`` and ``x.register.png`` (:mod:`benchmarks.plot`).
``--profile out`` runs yappi in the server (CPU clock, every thread) during the
authorizations and during the single registrations, writing ``out.authorize.txt`` and
``out.register.txt`` (``pip install yappi``; not a dependency).

Usage:
    .venv/bin/python -m benchmarks.bench_registry_http [--identities 50] [--slots 20]
        [--rounds 1] [--loads 1,4,16,64] [--concurrency 16] [--registrations 2000]
        [--batch 50] [--proof-requests 5000] [--workers 2] [--out FILE.json]
        [--profile PREFIX] [--json]
    smoke size: --identities 2 --slots 1 --loads 1,2 --registrations 10 --batch 5 --proof-requests 10
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


def _prove(job: tuple[int, int, dict[str, Any], int, int, tuple[int, str]]) -> dict[str, Any]:
    from zk.identity import Identity
    from zk.proof import generate_proof
    from zk.relay_scope import RegistryRef, RelayScope, blob_message
    from zk.tree import MerkleProof

    i, slot, merkle_json, epoch, group_id, home = job
    who = Identity(f"bench-http-{i}")
    digest = hashlib.sha256(f"blob {i} {slot}".encode()).digest()
    scope = RelayScope.of(RegistryRef(*home), group_id, epoch, slot).encode()
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


def wait_for_proofs(base: str, commitments: list[str], timeout: float, what: str) -> None:
    """Wait until every commitment's Merkle proof answers ``200`` (it is in the index).

    What the next step needs, not a proxy for it: an empty outbox and a small lag in
    ``/v1/health`` do not mean the indexer has applied the batch yet (a race that made
    ``--identities 20`` fail with 404). Walks the members in order, retrying the first one
    still missing, so a settled group costs one request per member. A status other than
    200, 409 (queued, not on chain yet) or 404 (on chain, not indexed yet) is an error."""
    import httpx

    deadline = time.monotonic() + timeout
    done = 0
    with httpx.Client(base_url=base, timeout=60.0) as http:
        while done < len(commitments):
            status = http.get(f"/v1/groups/0/proofs/{commitments[done]}").status_code
            if status == 200:
                done += 1
                continue
            if status not in (404, 409):
                raise RuntimeError(f"GET /v1/groups/0/proofs/... answered {status} while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}: {len(commitments) - done} of {len(commitments)} not indexed")
            time.sleep(0.2)


def _parse_loads(text: str) -> list[int]:
    loads = sorted({int(x) for x in text.split(",") if x.strip()})
    if not loads or loads[0] < 1:
        raise argparse.ArgumentTypeError("--loads: comma-separated request counts in flight, each >= 1")
    return loads


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=50)
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="Authorization rounds at each offered load.")
    parser.add_argument("--loads", type=_parse_loads, default=[1, 4, 16, 64],
                        help="Offered loads: requests kept in flight by the load generator (comma-separated).")
    parser.add_argument("--concurrency", type=int, default=16, help="Requests in flight for the batched registrations and the Merkle proofs.")
    parser.add_argument("--registrations", type=int, default=2000, help="Single registrations at each offered load.")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--proof-requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="Proving processes and bare-verification threads.")
    parser.add_argument("--out", type=Path, help="Write the JSON here and the load-profile PNGs next to it.")
    parser.add_argument("--profile", type=Path, help="Profile the server (yappi, all threads) during the authorizations and the single registrations; write the top functions to PROFILE.authorize.txt and PROFILE.register.txt.")
    parser.add_argument("--batch-interval", type=float, default=2.0, help="ZKID_BATCH_INTERVAL of the server (the default: 2 s).")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="ZKID_POLL_INTERVAL of the server (the default: 0.5 s).")
    parser.add_argument("--json", action="store_true", help="Print only the JSON result.")
    return parser


def _start_server(args: argparse.Namespace, anvil_url: str, manifest: Path, data: Path, work: Path, token: str) -> tuple[subprocess.Popen[bytes], str, Any]:
    from registry.ledger.anvil import free_port

    port = free_port()
    env = {
        **os.environ,
        "ZKID_EPOCH_LENGTH": str(EPOCH_LENGTH),
        "ZKID_MESSAGE_LIMIT": str(max(args.slots, 1)),
        "ZKID_CONFIRMATIONS": "1",
        # The batcher's and the indexer's pace: the registry's defaults unless asked (each
        # batch and each poll costs the server CPU, and Anvil, beside it, much more).
        "ZKID_BATCH_INTERVAL": str(args.batch_interval),
        "ZKID_BATCH_MIN_SIZE": "1",  # no k-anonymity floor: a tiny run does not wait batch_max_wait
        "ZKID_POLL_INTERVAL": str(args.poll_interval),
        "ZKID_OPERATOR_TOKEN": token,
        # One load generator on 127.0.0.1 stands for many clients: no per-IP limits for it.
        "ZKID_IP_LIMIT_EXEMPT": "127.0.0.1",
    }
    if args.profile:
        env["BENCH_PROFILE_OUT"] = str(args.profile.resolve())
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        [PYTHON, "-m", "benchmarks.bench_registry_http", "serve", "--rpc-url", anvil_url,
         "--manifest", str(manifest), "--data-dir", str(data), "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    return server, f"http://127.0.0.1:{port}", log


def _fresh_commitments(n: int) -> list[str]:
    from zk.field import R

    return [str(secrets.randbelow(R - 1) + 1) for _ in range(n)]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(server: subprocess.Popen[bytes], run: Any, requests: int) -> dict[str, float]:
    """Run ``run()`` and add the server's CPU per request to its summary: less sensitive
    to other jobs on a shared machine than throughput (it includes the server's background
    threads, the batcher and the indexer, which share its GIL)."""
    before = _cpu_seconds(server.pid)
    summary: dict[str, float] = run()
    summary["server_cpu_ms_per_request"] = round((_cpu_seconds(server.pid) - before) * 1000 / max(1, requests), 3)
    return summary


def _authorize_profile(args: argparse.Namespace, base: str, bodies: list[dict[str, Any]], data: Path, work: Path,
                       server: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """One point per offered load: every proof posted ``--rounds`` times, the nullifier
    table emptied before each round so every request takes the whole path."""
    items = [{"method": "POST", "path": "/v1/authorize", "body": b} for b in bodies]
    points = []
    _profile(args, server, "authorize", start=True)
    for load in args.loads:
        def rounds(load: int = load) -> dict[str, Any]:
            results = []
            for _ in range(args.rounds):
                _reset_nullifiers(data / "nullifiers.sqlite")
                results.append(run_load(base, items, load, work))
            return summarize(results, "200")

        points.append({"offered": load, **_measured(server, rounds, len(items) * args.rounds)})
    _profile(args, server, "authorize", start=False)
    return points


def _profile(args: argparse.Namespace, server: subprocess.Popen[bytes], phase: str, *, start: bool) -> None:
    """Start or stop the server's profiler (``--profile``) around one phase; its report goes
    to ``<profile>.<phase>.txt`` (the phase name travels in a file next to it)."""
    if not args.profile:
        return
    if start:
        Path(f"{args.profile.resolve()}.phase").write_text(phase, encoding="utf-8")
    server.send_signal(signal.SIGUSR1 if start else signal.SIGUSR2)
    time.sleep(0.5)  # let the handler run before the load (or the next phase) starts


def _register_profile(args: argparse.Namespace, base: str, work: Path, server: subprocess.Popen[bytes]) -> tuple[list[dict[str, Any]], list[str]]:
    """Single registrations (one fresh commitment per request) at each offered load."""
    points, members = [], []
    _profile(args, server, "register", start=True)
    for load in args.loads:
        fresh = _fresh_commitments(args.registrations)
        members += fresh
        items = [{"method": "POST", "path": "/v1/groups/0/members", "body": {"commitments": [c]}} for c in fresh]
        points.append({"offered": load, **_measured(server, lambda: summarize([run_load(base, items, load, work)], "202"), len(items))})
    _profile(args, server, "register", start=False)
    return points, members


def _at(points: list[dict[str, Any]], load: int) -> dict[str, Any]:
    return next((p for p in points if p["offered"] == load), max(points, key=lambda p: float(p["per_second"])))


def _plots(out: Path, report: dict[str, Any]) -> dict[str, str]:
    from benchmarks.plot import plot_load_profile

    ceiling = float(report["verify_bare"]["per_second"])
    authorize = plot_load_profile(
        report["authorize_load"], "POST /v1/authorize (valid proofs, durable nullifier claims)",
        out.with_suffix(".authorize.png"), y_label="authorizations/s",
        ceiling=ceiling, ceiling_label="bare verification, same run", latency_target_ms=50.0,
    )
    register = plot_load_profile(
        report["register_single_load"], "POST /v1/groups/0/members (one commitment per request)",
        out.with_suffix(".register.png"), y_label="registrations/s", ceiling=1000.0, ceiling_label="target",
    )
    return {"authorize": str(authorize), "register_single": str(register)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)

    from registry.ledger.anvil import AnvilProcess
    from registry.ledger.accounts import anvil_dev_account
    from registry.ledger.deploy import deploy_contracts, save_manifest
    from registry.ledger.tx import Transactor
    from zk.identity import Identity
    from zk.relay_scope import epoch_at

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "params": params}
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="zkid-bench-") as tmp, AnvilProcess(["--gas-limit", "300000000"]) as anvil:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        deployed = deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0)), region="bench")
        manifest = save_manifest(data, deployed)
        home = (deployed.chain_id, deployed.address("ZkIdRegistry"))  # the registry the scopes name
        server, base, server_log = _start_server(args, anvil.rpc_url, manifest, data, work, token)
        try:
            _wait(lambda: _reachable(base, server, work / "server.log"), 120, "the registry to listen")
            say(f"registry up at {base} (pid {server.pid})")
            _http("PUT", f"{base}/v1/groups/0/admission", json={"policy": "open"},
                  headers={"Authorization": f"Bearer {token}"})

            # Members for the authorization proofs, anchored and indexed before proving.
            identities = [Identity(f"bench-http-{i}") for i in range(args.identities)]
            commitments = [str(i.commitment) for i in identities]
            _http("POST", f"{base}/v1/groups/0/members", json={"commitments": commitments})
            wait_for_proofs(base, commitments, 300, "the identities to be indexed")
            epoch = epoch_at(time.time(), EPOCH_LENGTH)
            jobs: list[tuple[int, int, dict[str, Any], int, int, tuple[int, str]]] = []
            for i, c in enumerate(commitments):
                merkle = _http("GET", f"{base}/v1/groups/0/proofs/{c}")["merkle_proof"]
                jobs.extend((i, slot, merkle, epoch, 0, home) for slot in range(args.slots))
            say(f"proving {len(jobs)} authorizations with {args.workers} processes...")
            t0 = time.perf_counter()
            with ProcessPoolExecutor(args.workers) as pool:
                bodies = list(pool.map(_prove, jobs, chunksize=4))
            report["proving"] = {"proofs": len(bodies), "seconds": round(time.perf_counter() - t0, 1)}

            say("bare verification...")
            report["verify_bare"] = bare_verify(bodies, args.rounds, args.workers)

            say(f"authorize: {args.rounds} round(s) of {len(bodies)} at loads {args.loads}...")
            report["authorize_load"] = _authorize_profile(args, base, bodies, data, work, server)
            report["authorize"] = _at(report["authorize_load"], args.concurrency)

            say(f"register: {args.registrations} single at loads {args.loads}, {args.registrations // args.batch} x {args.batch}...")
            report["register_single_load"], members = _register_profile(args, base, work, server)
            report["register_single"] = _at(report["register_single_load"], args.concurrency)
            batches: list[dict[str, Any]] = [
                {"method": "POST", "path": "/v1/groups/0/members", "body": {"commitments": _fresh_commitments(args.batch)}}
                for _ in range(max(1, args.registrations // args.batch))
            ]
            report["register_batch"] = summarize([run_load(base, batches, args.concurrency, work)], "202", args.batch)
            members += [c for it in batches for c in it["body"]["commitments"]]

            say("waiting for the batcher and the indexer...")
            t0 = time.perf_counter()
            wait_for_proofs(base, members, 900, "the registrations to be indexed")
            report["anchoring"] = {"members": args.identities + len(members), "seconds_after_load": round(time.perf_counter() - t0, 1)}
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
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report["plots"] = _plots(args.out, report)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _reachable(base: str, server: subprocess.Popen[bytes], log: Path) -> bool:
    import httpx

    if server.poll() is not None:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"the registry exited with {server.returncode}:\n{tail}")
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
    if os.environ.get("BENCH_PROFILE_OUT"):
        _install_profiler(Path(os.environ["BENCH_PROFILE_OUT"]))
    app(["serve", *argv], prog_name="zkid")


def _install_profiler(out: Path) -> None:
    """SIGUSR1 starts yappi (wall clock, every thread: the sync routes run in the thread
    pool, which cProfile would miss); SIGUSR2 stops it and writes the top functions by
    total time and by own time. yappi is not a dependency: ``pip install yappi``."""
    import yappi  # type: ignore[import-untyped]

    def start(*_: Any) -> None:
        yappi.set_clock_type("cpu")
        yappi.start(builtins=False)

    def stop(*_: Any) -> None:
        yappi.stop()
        stats = yappi.get_func_stats()
        phase_file = Path(f"{out}.phase")
        phase = phase_file.read_text(encoding="utf-8").strip() if phase_file.exists() else "profile"
        with Path(f"{out}.{phase}.txt").open("w", encoding="utf-8") as f:
            for key, title in (("ttot", "by total (inclusive) CPU time"), ("tsub", "by own CPU time")):
                f.write(f"== {title}\n")
                stats.sort(key, "desc")
                stats.print_all(out=f, columns={0: ("name", 90), 1: ("ncall", 9), 2: ("tsub", 8), 3: ("ttot", 8), 4: ("tavg", 8)})
            f.write("== threads\n")
            yappi.get_thread_stats().print_all(out=f)
        yappi.clear_stats()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_main(sys.argv[2:])
    else:
        result = main(sys.argv[1:])
        print(json.dumps(result, indent=2))
