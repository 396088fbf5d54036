"""Registry replicas on PostgreSQL against one process on SQLite (issue 12, Benchmarks).

Everything in one run, on this machine:

1. ``POST /v1/authorize`` (distinct valid proofs, each authorized once) and
   ``POST /v1/groups/0/members`` (one fresh commitment per request) against three set-ups,
   each a real ``zkid serve`` process per replica (``tests/support/replicas.py``) with its
   own Anvil and deployment: ``sqlite`` (one process, SQLite files), ``postgresql_1`` (one
   replica on a loopback PostgreSQL) and ``postgresql_2`` (two replicas on it, requests
   round-robin). The load generator is a separate process (httpx, ``--concurrency``
   requests in flight). Correctness is checked, not assumed: every proof answers ``200``
   exactly once (a sample sent again answers ``409``), every accepted registration is on
   chain exactly once (the group's size on the contract).
2. ``SqlNullifierStore.claim`` latency, directly against the same PostgreSQL and against
   an SQLite file (durable), one claim at a time; beside them the same PostgreSQL path
   without waiting for the WAL flush, and a bare ``fsync`` on the same disk.
   Replica and PostgreSQL CPU per request is read from ``/proc`` (less sensitive to other
   jobs on a shared machine than throughput).
3. Failover: the leader of the two replicas is SIGKILLed; a registration is sent to the
   survivor at once; the time until its status is ``included`` (the new leader took the
   lease, reconciled and anchored it). ``--failovers`` times, median. The killed replica
   is restarted (as a follower) between rounds.

The deployment is deterministic (a fresh Anvil, the same dev account and the same first
members give the same contract address and group root), so one pool of proofs serves
every set-up; ``--proof-cache FILE`` keeps it between runs (it is checked against the
registry, root and epoch, and remade when they differ). Proving costs ~0.4 s per proof.

Usage:
    .venv/bin/python -m benchmarks.bench_replicas [--identities 20] [--slots 20]
        [--registrations 1000] [--concurrency 16] [--failovers 5] [--claims 2000]
        [--proof-cache FILE] [--out benchmarks/results/replicas.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GROUP = 0
EPOCH_LENGTH = 1_000_000  # one epoch covers the whole run (proofs are made before the load)
TOKEN = "test-operator-token-0123456789"  # tests/support/replicas.py sets this one


# ---------------------------------------------------------------------------- load generator (its own process)


async def _load(urls: list[str], items: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    import httpx

    statuses: list[int] = [0] * len(items)
    latencies: list[float] = []
    cursor = iter(range(len(items)))
    limits = httpx.Limits(max_connections=concurrency * len(urls), max_keepalive_connections=concurrency * len(urls))
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:

        async def worker() -> None:
            for i in cursor:
                item = items[i]
                t0 = time.perf_counter()
                try:
                    r = await client.request(item["method"], urls[i % len(urls)] + item["path"], json=item.get("body"))
                    statuses[i] = r.status_code
                except httpx.HTTPError:
                    statuses[i] = -1
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "statuses": statuses, "latencies": latencies}


def load_main(requests_file: str, concurrency: int, urls: str) -> None:
    """Child process: JSON-lines requests, sent round-robin to ``urls``; one JSON line out."""
    with open(requests_file, encoding="utf-8") as f:
        items = [json.loads(line) for line in f]
    result = asyncio.run(_load(urls.split(","), items, concurrency))
    sys.stdout.write(json.dumps(result) + "\n")


def run_load(urls: list[str], items: list[dict[str, Any]], concurrency: int, workdir: Path) -> dict[str, Any]:
    path = workdir / f"requests-{secrets.token_hex(4)}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, separators=(",", ":")) + "\n")
    out = subprocess.run(
        [PYTHON, "-m", "benchmarks.bench_replicas", "load", str(path), str(concurrency), ",".join(urls)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=3600,
    )
    path.unlink()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def summarize(result: dict[str, Any], ok: int) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for s in result["statuses"]:
        counts[str(s)] = counts.get(str(s), 0) + 1
    lat = result["latencies"]
    return {
        "requests": len(result["statuses"]),
        "ok": counts.get(str(ok), 0),
        "statuses": counts,
        "seconds": round(result["elapsed"], 3),
        "per_second": round(counts.get(str(ok), 0) / result["elapsed"], 1),
        "p50_ms": round(_pct(lat, 0.5) * 1000, 2),
        "p99_ms": round(_pct(lat, 0.99) * 1000, 2),
    }


# ---------------------------------------------------------------------------- CPU accounting


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of live process ``pid`` and its direct
    children: a replica; PostgreSQL's postmaster and its backends (each backend calls
    ``setsid``, so a process group would miss them)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return total


class CpuMeter:
    """CPU used by the replicas and by PostgreSQL during a measured step."""

    def __init__(self, replica_pids: list[int], pg_pid: int | None) -> None:
        self.replica_pids, self.pg_pid = replica_pids, pg_pid

    def snapshot(self) -> tuple[float, float]:
        return (sum(_tree_cpu(p) for p in self.replica_pids), _tree_cpu(self.pg_pid) if self.pg_pid else 0.0)

    def per_request(self, before: tuple[float, float], requests: int) -> dict[str, float]:
        after = self.snapshot()
        n = max(requests, 1)
        return {"replicas_cpu_ms_per_request": round((after[0] - before[0]) * 1000 / n, 3),
                "postgres_cpu_ms_per_request": round((after[1] - before[1]) * 1000 / n, 3)}


# ---------------------------------------------------------------------------- proofs


def _prove(job: tuple[int, int, dict[str, Any], int, tuple[int, str]]) -> dict[str, Any]:
    from zk.proof import generate_proof
    from zk.relay_scope import RegistryRef, RelayScope, blob_message
    from zk.tree import MerkleProof

    i, slot, merkle_json, epoch, home = job
    digest = hashlib.sha256(f"bench-replicas blob {i} {slot}".encode()).digest()
    scope = RelayScope.of(RegistryRef(*home), GROUP, epoch, slot).encode()
    proof = generate_proof(_identity(i), MerkleProof.from_dict(merkle_json), blob_message(digest), scope)
    return {"group_id": GROUP, "proof": proof.to_dict(), "blob_digest": digest.hex()}


def _identity(i: int) -> Any:
    from zk.identity import Identity

    return Identity(f"bench-replicas-{i}")


def proof_pool(args: argparse.Namespace, url: str, home: tuple[int, str], say: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``identities x slots`` distinct authorization bodies (from the cache when it matches)."""
    import httpx

    from zk.relay_scope import epoch_at

    epoch = epoch_at(time.time(), EPOCH_LENGTH)
    merkles = []
    for i in range(args.identities):
        r = httpx.get(f"{url}/v1/groups/{GROUP}/proofs/{_identity(i).commitment}", timeout=60)
        r.raise_for_status()
        merkles.append(r.json()["merkle_proof"])
    key = {"home": list(home), "root": str(merkles[0]["root"]), "epoch": epoch,
           "identities": args.identities, "slots": args.slots}
    cache: Path | None = args.proof_cache
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            say(f"proofs from {cache}")
            return list(stored["bodies"]), {"proofs": len(stored["bodies"]), "cached": True}
    jobs = [(i, slot, merkles[i], epoch, home) for i in range(args.identities) for slot in range(args.slots)]
    say(f"proving {len(jobs)} authorizations in {args.workers} processes...")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        bodies = list(pool.map(_prove, jobs, chunksize=4))
    took = time.perf_counter() - t0
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "bodies": bodies}))
    return bodies, {"proofs": len(bodies), "cached": False, "seconds": round(took, 1)}


# ---------------------------------------------------------------------------- set-ups


@contextlib.contextmanager
def deployment(work: Path, name: str, database_url: str, replicas: int) -> Iterator[Any]:
    """``replicas`` real ``zkid serve`` processes on ``database_url`` (``sqlite:``: one
    process on SQLite files), their own Anvil, group 0 ``open`` and the bench identities
    registered, anchored and indexed on every replica."""
    from registry.client.api import RegistryClient
    from tests.support.replicas import replica_set
    from tests.support.wait import wait_until

    settings = {"epoch_length": str(EPOCH_LENGTH), "message_limit": "1000", "batch_min_size": "1",
                "ip_limit_exempt": "127.0.0.1"}
    with replica_set(work / name, database_url, replicas, **settings) as group:
        first = group.replicas[0].url
        wait_until(lambda: _get_status(f"{first}/v1/groups/{GROUP}") == 200, 120, "group 0 indexed", interval=0.2)
        with RegistryClient(first) as client:
            client.set_admission(GROUP, {"policy": "open"}, TOKEN)
        yield group


def _get_status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.HTTPError:
        return -1


def _all_ok(group: Any) -> bool:
    import httpx

    try:
        return all(r.health()["status"] == "ok" for r in group.replicas)
    except (httpx.HTTPError, KeyError, ValueError):
        return False


def register_identities(group: Any, count: int) -> None:
    """The bench identities, one request (always the same order: the same root)."""
    import httpx

    from benchmarks.bench_registry_http import wait_for_proofs
    from tests.support.wait import wait_until

    commitments = [str(_identity(i).commitment) for i in range(count)]
    r = httpx.post(f"{group.replicas[0].url}/v1/groups/{GROUP}/members", json={"commitments": commitments}, timeout=60)
    r.raise_for_status()
    for replica in group.replicas:
        wait_for_proofs(replica.url, commitments, 300, "the bench identities")
    wait_until(lambda: _all_ok(group), 120, "every replica healthy", interval=0.2)


def _contract_size(group: Any) -> int:
    from registry.ledger.registry_contract import RegistryContract

    return RegistryContract(group.anvil.w3, group.manifest.address("ZkIdRegistry")).size(GROUP)


def measure_set(args: argparse.Namespace, group: Any, bodies: list[dict[str, Any]], work: Path, pg_pid: int | None) -> dict[str, Any]:
    """Authorizations then registrations, round-robin over the replicas, checked."""
    from benchmarks.bench_registry_http import wait_for_proofs
    from zk.field import R

    urls = [r.url for r in group.replicas]
    meter = CpuMeter([r.process.pid for r in group.replicas], pg_pid)
    out: dict[str, Any] = {"replicas": len(urls)}

    items = [{"method": "POST", "path": "/v1/authorize", "body": b} for b in bodies]
    before = meter.snapshot()
    auth = summarize(run_load(urls, items, args.concurrency, work), 200)
    out["authorize"] = {**auth, **meter.per_request(before, len(items))}
    again = summarize(run_load(urls, items[: min(20, len(items))], 2, work), 409)
    out["authorize"]["every_proof_once"] = auth["ok"] == len(items) and again["ok"] == again["requests"]

    size0 = _contract_size(group)
    fresh = [str(secrets.randbelow(R - 1) + 1) for _ in range(args.registrations)]
    items = [{"method": "POST", "path": f"/v1/groups/{GROUP}/members", "body": {"commitments": [c]}} for c in fresh]
    before = meter.snapshot()
    result = run_load(urls, items, args.concurrency, work)
    reg = summarize(result, 202)
    out["register"] = {**reg, **meter.per_request(before, len(items))}
    accepted = [c for c, s in zip(fresh, result["statuses"]) if s == 202]
    t0 = time.perf_counter()
    wait_for_proofs(urls[-1], accepted, 600, "the registrations to be indexed")
    out["register"]["seconds_until_all_indexed"] = round(time.perf_counter() - t0, 2)
    out["register"]["on_chain_exactly_once"] = _contract_size(group) - size0 == len(accepted) == len(fresh)
    return out


# ---------------------------------------------------------------------------- failover


def failover_once(group: Any) -> dict[str, float]:
    """SIGKILL the leader; register one commitment at a survivor right away; seconds until
    a survivor leads and until the registration is ``included``; restart the killed one."""
    import httpx

    from tests.support.wait import wait_until
    from zk.field import R

    leader = group.leader(timeout=60)
    survivor = next(r for r in group.replicas if r is not leader and r.alive)
    commitment = str(secrets.randbelow(R - 1) + 1)
    killed_at = time.monotonic()
    leader.kill()
    r = httpx.post(f"{survivor.url}/v1/groups/{GROUP}/members", json={"commitments": [commitment]}, timeout=30)
    if r.status_code != 202:
        raise RuntimeError(f"the survivor refused the registration after the kill: {r.status_code}")
    accepted_after = time.monotonic() - killed_at
    new_leader_after: float | None = None
    deadline = killed_at + 120
    while True:
        now = time.monotonic()
        if new_leader_after is None and survivor.health().get("role") == "leader":
            new_leader_after = now - killed_at
        status = httpx.get(f"{survivor.url}/v1/groups/{GROUP}/members/{commitment}", timeout=10)
        if status.status_code == 200 and status.json().get("status") in ("included", "final"):
            anchored_after = time.monotonic() - killed_at
            break
        if now > deadline:
            raise TimeoutError("no new leader anchored the registration within 120 s")
        time.sleep(0.05)
    leader.start()  # back as a follower
    wait_until(lambda: _all_ok(group), 120, "every replica healthy after the restart", interval=0.2)
    return {"accepted_after_s": round(accepted_after, 3), "new_leader_after_s": round(new_leader_after or anchored_after, 3),
            "anchored_after_s": round(anchored_after, 3)}


# ---------------------------------------------------------------------------- nullifier claims


def claim_latency(store: Any, count: int) -> dict[str, Any]:
    """``count`` claims of distinct nullifiers, one at a time (each a durable commit)."""
    base = secrets.randbits(128)
    for i in range(min(20, count)):  # warm the pool / the file
        store.claim(GROUP, base - 1 - i, 1)
    lat = []
    for i in range(count):
        t0 = time.perf_counter()
        won = store.claim(GROUP, base + i, 1)
        lat.append(time.perf_counter() - t0)
        assert won
    assert not store.claim(GROUP, base, 1)
    return {"claims": count, "p50_ms": round(_pct(lat, 0.5) * 1000, 3), "p99_ms": round(_pct(lat, 0.99) * 1000, 3),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3)}


def fsync_latency(path: Path, count: int) -> dict[str, Any]:
    """The disk's part of a durable commit: a 64-byte append and ``fsync``, ``count`` times."""
    lat = []
    with path.open("wb") as f:
        for _ in range(count):
            f.write(b"x" * 64)
            f.flush()
            t0 = time.perf_counter()
            os.fsync(f.fileno())
            lat.append(time.perf_counter() - t0)
    return {"fsyncs": count, "p50_ms": round(_pct(lat, 0.5) * 1000, 3), "p99_ms": round(_pct(lat, 0.99) * 1000, 3)}


def _pg_claims(url: str, count: int, postmaster: int) -> dict[str, Any]:
    """Claim latency, and PostgreSQL's own CPU per claim (read before the pool closes:
    an exited backend's CPU is no longer in /proc)."""
    from registry.service.authorization import SqlNullifierStore
    from registry.storage.database import PostgresDatabase

    store = SqlNullifierStore(PostgresDatabase(url, "zkid_nullifiers"))
    try:
        cpu = _tree_cpu(postmaster)
        out = claim_latency(store, count)
        out["postgres_cpu_ms_per_claim"] = round((_tree_cpu(postmaster) - cpu) * 1000 / (count + 21), 3)
        return out
    finally:
        store.close()


def claims(pg: Any, work: Path, count: int) -> dict[str, Any]:
    """Claim latency on PostgreSQL and SQLite, with the two references that explain it: the
    same PostgreSQL path without waiting for the WAL flush (``synchronous_commit = off`` on
    that database: the loopback round trips and the pool), and a bare fsync on the disk."""
    import psycopg

    from registry.service.authorization import SqlNullifierStore

    out = {"postgresql": _pg_claims(pg.create_database(), count, pg.process.pid)}
    url = pg.create_database()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET synchronous_commit = off')
    out["postgresql_no_commit_wait"] = _pg_claims(url, count, pg.process.pid)
    out["fsync"] = fsync_latency(work / "fsync.bin", count)
    store = SqlNullifierStore(work / "claims.sqlite")
    try:
        out["sqlite"] = claim_latency(store, count)
    finally:
        store.close()
    return out


# ---------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--slots", type=int, default=20, help="Proofs per identity (distinct nullifiers).")
    parser.add_argument("--registrations", type=int, default=1000, help="Single registrations per set-up.")
    parser.add_argument("--concurrency", type=int, default=16, help="Requests in flight (load generator).")
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--claims", type=int, default=2000, help="Nullifier claims timed per backend.")
    parser.add_argument("--workers", type=int, default=2, help="Proving processes.")
    parser.add_argument("--proof-cache", type=Path, help="Keep the proof pool in this file between runs.")
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    parser.add_argument("--json", action="store_true", help="Print only the JSON result.")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    from tests.support.postgres import PostgresServer

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_average_start": list(os.getloadavg())},
                              "params": params, "setups": {}}
    work = Path(tempfile.mkdtemp(prefix="zkid-bench-replicas-"))
    pg = PostgresServer(work / "pg")
    pg.start()
    try:
        assert pg.process is not None
        bodies: list[dict[str, Any]] = []
        for name, replicas in (("sqlite", 1), ("postgresql_1", 1), ("postgresql_2", 2)):
            url = "sqlite:" if name == "sqlite" else pg.create_database()
            say(f"{name}: starting {replicas} replica(s)...")
            with deployment(work, name, url, replicas) as group:
                register_identities(group, args.identities)
                if not bodies:
                    home = (group.manifest.chain_id, group.manifest.address("ZkIdRegistry"))
                    bodies, report["proving"] = proof_pool(args, group.replicas[0].url, home, say)
                say(f"{name}: {len(bodies)} authorizations, {args.registrations} registrations...")
                report["setups"][name] = measure_set(args, group, bodies, work, None if name == "sqlite" else pg.process.pid)
                if replicas == 2 and args.failovers:
                    say(f"failover x {args.failovers}...")
                    rounds = [failover_once(group) for _ in range(args.failovers)]
                    report["failover"] = {
                        "rounds": rounds,
                        "median_anchored_after_s": statistics.median(r["anchored_after_s"] for r in rounds),
                        "median_new_leader_after_s": statistics.median(r["new_leader_after_s"] for r in rounds),
                        "leader_lease_s": 5.0,
                    }
        say("nullifier claims...")
        report["nullifier_claims"] = claims(pg, work, args.claims)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        print(json.dumps(main(sys.argv[1:]), indent=2))
