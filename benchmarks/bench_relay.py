"""Load benchmark of one relay (issue 14, target 1): senders and recipients at once.

Setup, all real and on loopback: a throw-away Anvil with the contracts; the registry
service (its evidence log takes the relay's records) in this process; the relay as a real
``zkid relay --auth local`` process (uvicorn, roots read from the ledger, durable blob
store, nullifiers, evidence signed and queued, then posted to the log in batches); and the
load generator in a *third* process (asyncio, raw keep-alive HTTP/1.1 connections).

``--identities`` x ``--slots`` distinct send authorizations (Semaphore proofs, ~0.4 s
each) are made once in a process pool and cached in the temporary directory (valid while
the deployment, members and epoch are the same: Anvil deploys to the same addresses, the
identities are fixed, the epoch is ~11 days). Each load point posts all of them once; the
relay's nullifier table is emptied (SQL ``DELETE`` on its ``nullifiers.sqlite``) between
points, so every send runs the whole path again: parsing, root lookup, pairing check,
durable nullifier claim, durable blob write, signed acceptance record.

A point is an offered send rate (open loop: send ``i`` is due at ``t0 + i / rate``, on
``--senders`` connections); each accepted blob is handed to the recipients
(``--recipients`` connections) who fetch the mailbox with the capability (consignment
record) and acknowledge it (erased, access record). Throughput is blobs completed (acked)
per second; latencies are per request, from the moment it was written to its answer.
The ceiling beside it is the bare verification rate in the same run: ``verify_proof`` of
the same proofs on ``--workers`` threads (groth16py releases the GIL) and on as many
processes.

Usage:
    .venv/bin/python -m benchmarks.bench_relay [--identities 40] [--slots 10]
        [--rates 100,200,300,400,500,600] [--senders 32] [--recipients 16] [--workers 2]
        [--out benchmarks/results/relay.json] [--profile PREFIX]

``--profile PREFIX`` runs the relay under yappi (every thread) and profiles two extra
closed-loop points: wall clock (``PREFIX.wall.txt``: where a request's time goes,
waits included) and CPU clock (``PREFIX.cpu.txt``); yappi is not a dependency
(``pip install yappi``). Those points are slower (the profiler's cost) and are kept out of
``best_blobs_per_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import multiprocessing
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
EPOCH_LENGTH = 1_000_000  # one epoch covers the run (proofs are made before the load)
BLOB_BYTES = 1024


# ---------------------------------------------------------------------------- load generator (child process)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, (await reader.readexactly(length)) if length else b""


def _request(host: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def _run_point(url: str, sends: list[dict[str, str]], rate: float, senders: int, recipients: int) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    netloc = parts.netloc
    lat: dict[str, list[float]] = {"send": [], "pickup": [], "ack": []}
    statuses: dict[str, int] = {}
    todo: asyncio.Queue[int | None] = asyncio.Queue()
    handed: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
    done_at: list[float] = []

    def count(kind: str, status: int) -> None:
        statuses[f"{kind} {status}"] = statuses.get(f"{kind} {status}", 0) + 1

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while (i := await todo.get()) is not None:
            s = sends[i]
            t = time.perf_counter()
            status, body = await _exchange(reader, writer, _request(netloc, "POST", "/v1/blobs", s["body"].encode()))
            lat["send"].append(time.perf_counter() - t)
            count("send", status)
            if status == 201:
                handed.put_nowait((i, json.loads(body)["id"]))
        writer.close()

    async def recipient() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while (item := await handed.get()) is not None:
            i, blob_id = item
            header = {"X-Pickup-Capability": sends[i]["capability"]}
            t = time.perf_counter()
            status, body = await _exchange(reader, writer, _request(netloc, "GET", f"/v1/mailboxes/{sends[i]['tag']}", None, header))
            lat["pickup"].append(time.perf_counter() - t)
            count("pickup", status)
            t = time.perf_counter()
            status, _ = await _exchange(reader, writer, _request(netloc, "POST", f"/v1/blobs/{blob_id}/ack", None, header))
            lat["ack"].append(time.perf_counter() - t)
            count("ack", status)
            if status == 200:
                done_at.append(time.perf_counter())
        writer.close()

    send_tasks = [asyncio.create_task(sender()) for _ in range(senders)]
    recv_tasks = [asyncio.create_task(recipient()) for _ in range(recipients)]
    t0 = time.perf_counter()
    for i in range(len(sends)):
        due = t0 + i / rate if rate > 0 else t0
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        todo.put_nowait(i)
    for _ in send_tasks:
        todo.put_nowait(None)
    await asyncio.gather(*send_tasks)
    for _ in recv_tasks:
        handed.put_nowait(None)
    await asyncio.gather(*recv_tasks)
    elapsed = (max(done_at) if done_at else time.perf_counter()) - t0
    return {"offered_per_s": rate, "completed": len(done_at), "elapsed_s": elapsed, "statuses": statuses, "latencies": lat}


def load_main(url: str, sends_file: str, rate: str, senders: str, recipients: str) -> None:
    """Child process: run one load point, print one JSON line."""
    sends = json.loads(Path(sends_file).read_text())
    result = asyncio.run(_run_point(url, sends, float(rate), int(senders), int(recipients)))
    sys.stdout.write(json.dumps(result) + "\n")


# ---------------------------------------------------------------------------- proofs


def _prove(job: tuple[bytes, list[int], int, int, str, int, int, bytes]) -> dict[str, Any]:
    from zk.identity import Identity
    from zk.proof import generate_proof
    from zk.relay_scope import RegistryRef, RelayScope, blob_message, digest_blob
    from zk.tree import LeanIMT

    key, leaves, chain_id, _, contract, epoch, slot, blob = job
    scope = RelayScope.of(RegistryRef(chain_id, contract), 0, epoch, slot).encode()
    proof = generate_proof(Identity(key), LeanIMT(leaves=leaves), blob_message(digest_blob(blob)), scope)
    return proof.to_dict()


def _proofs(people: list[Any], slots: int, chain_id: int, contract: str, epoch: int, workers: int) -> list[tuple[dict[str, Any], bytes]]:
    """(proof, blob) per identity and slot; cached across runs in the temporary directory."""
    leaves = [p.commitment for p in people]
    key = hashlib.sha256(json.dumps([str(x) for x in leaves] + [chain_id, contract, epoch, slots]).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"zkid-bench-relay-proofs-{key}.json"
    if cache.exists():
        return [(p, bytes.fromhex(b)) for p, b in json.loads(cache.read_text())]
    jobs = []
    for who in people:
        for slot in range(slots):
            blob = hashlib.sha256(b"%d/%d" % (who.commitment, slot)).digest() * (BLOB_BYTES // 32)
            jobs.append((who.private_key, leaves, chain_id, 0, contract, epoch, slot, blob))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        proofs = list(pool.map(_prove, jobs, chunksize=4))
    out = [(p, job[7]) for p, job in zip(proofs, jobs)]
    cache.write_text(json.dumps([(p, b.hex()) for p, b in out]))
    return out


def verify_ceiling(proofs: list[dict[str, Any]], workers: int, rounds: int = 2) -> dict[str, Any]:
    """The bare verification rate: ``verify_proof`` on ``workers`` threads and processes."""
    from zk.proof import SemaphoreProof, verify_proof

    parsed = [SemaphoreProof.from_dict(p) for p in proofs] * rounds
    out: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(verify_proof, parsed[:workers]))
        t = time.perf_counter()
        assert all(pool.map(verify_proof, parsed))
        out["threads_per_s"] = round(len(parsed) / (time.perf_counter() - t), 1)
    t = time.perf_counter()
    for p in parsed[: len(parsed) // 4]:
        verify_proof(p)
    out["one_thread_per_s"] = round((len(parsed) // 4) / (time.perf_counter() - t), 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(verify_proof, parsed[:workers]))
        t = time.perf_counter()
        assert all(pool.map(verify_proof, parsed, chunksize=1))
        out["processes_per_s"] = round(len(parsed) / (time.perf_counter() - t), 1)
    out["workers"] = workers
    return out


# ---------------------------------------------------------------------------- setup


def relay_main(argv: list[str]) -> None:
    """Child process (``--profile``): the real ``zkid relay`` with :func:`_install_profiler`."""
    from registry.cli import lazy_app

    _install_profiler(Path(os.environ["BENCH_PROFILE_OUT"]))
    sys.argv = ["zkid", *argv]
    lazy_app(argv)(prog_name="zkid")


def _install_profiler(out: Path) -> None:
    """SIGUSR1 starts yappi on every thread with the clock named in ``<out>.phase``
    (``wall`` or ``cpu``); SIGUSR2 stops it and writes ``<out>.<clock>.txt``: the functions
    by inclusive and by own time, per call and in total."""
    import yappi  # type: ignore[import-untyped]

    def start(*_: Any) -> None:
        yappi.set_clock_type(Path(f"{out}.phase").read_text(encoding="utf-8").strip())
        yappi.start(builtins=False)

    def stop(*_: Any) -> None:
        yappi.stop()
        clock = Path(f"{out}.phase").read_text(encoding="utf-8").strip()
        stats = yappi.get_func_stats()
        with Path(f"{out}.{clock}.tmp").open("w", encoding="utf-8") as f:
            for key, title in (("ttot", "by total (inclusive) time"), ("tsub", "by own time")):
                f.write(f"== {title} ({clock} clock)\n")
                stats.sort(key, "desc")
                stats.print_all(out=f, columns={0: ("name", 100), 1: ("ncall", 9), 2: ("tsub", 8), 3: ("ttot", 8), 4: ("tavg", 8)})
            f.write("== threads\n")
            yappi.get_thread_stats().print_all(out=f)
        Path(f"{out}.{clock}.tmp").rename(f"{out}.{clock}.txt")
        yappi.clear_stats()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def _profiled_point(proc: subprocess.Popen[bytes], prefix: Path, clock: str, point: Any) -> dict[str, Any]:
    """Run ``point()`` with the relay's profiler on (``clock``), wait for its report."""
    Path(f"{prefix}.phase").write_text(clock, encoding="utf-8")
    report = Path(f"{prefix}.{clock}.txt")
    report.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    result: dict[str, Any] = point()
    proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 300
    while not report.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    result["profile"] = str(report)
    return result


@contextlib.contextmanager
def _relay_process(
    data: Path, rpc_url: str, evidence_url: str, slots: int, profile: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    from registry.ledger.anvil import free_port

    config = data.parent / "relay.toml"
    config.write_text(
        f"epoch_length = {EPOCH_LENGTH}\nmessage_limit = {slots}\nevidence_batch_min = 8\nevidence_batch_max_wait = 1.0\n"
    )
    port = free_port()
    log = (data.parent / "relay.log").open("w")
    argv = ["relay", "--config", str(config), "--data-dir", str(data), "--port", str(port), "--rpc-url", rpc_url,
            "--send-group", "0", "--evidence-url", evidence_url, "--rate-limit", "100000000"]
    command = [str(ROOT / ".venv" / "bin" / "zkid"), *argv]
    env = dict(os.environ)
    if profile is not None:
        command = [sys.executable, "-m", "benchmarks.bench_relay", "relay", *argv]
        env["BENCH_PROFILE_OUT"] = str(profile)
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the relay did not start: {(data.parent / 'relay.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _send_items(proofs: list[tuple[dict[str, Any], bytes]]) -> list[dict[str, str]]:
    """Fresh mailboxes and capabilities for one point."""
    items = []
    for proof, blob in proofs:
        capability, tag = secrets.token_bytes(32), secrets.token_bytes(32)
        body = {
            "mailbox": tag.hex(), "pickup_hash": hashlib.sha256(capability).hexdigest(),
            "blob": base64.b64encode(blob).decode(), "group_id": 0, "proof": proof,
        }
        items.append({"body": json.dumps(body, separators=(",", ":")), "tag": tag.hex(), "capability": capability.hex()})
    return items


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _point(url: str, proofs: list[tuple[dict[str, Any], bytes]], rate: float, senders: int, recipients: int, work: Path,
           relay_pid: int) -> dict[str, Any]:
    path = work / "sends.json"
    path.write_text(json.dumps(_send_items(proofs)))
    cpu_before = _cpu_seconds(relay_pid)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_relay", "load", url, str(path), str(rate), str(senders), str(recipients)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=3600,
    )
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    cpu_after = _cpu_seconds(relay_pid)

    def pct(values: list[float], p: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    every = [x for v in raw["latencies"].values() for x in v]
    return {
        "offered_per_s": rate,
        "completed": raw["completed"],
        "blobs_per_s": round(raw["completed"] / raw["elapsed_s"], 1),
        "statuses": raw["statuses"],
        "p50_ms": pct(every, 0.5),
        "p99_ms": pct(every, 0.99),
        "mean_ms": round(statistics.fmean(every) * 1000, 2) if every else None,
        "by_request": {k: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99)} for k, v in raw["latencies"].items()},
        # The relay process's CPU (every thread) per completed blob, this point only.
        "relay_cpu_ms_per_blob": None if cpu_before is None or cpu_after is None or not raw["completed"]
        else round((cpu_after - cpu_before) * 1000 / raw["completed"], 2),
    }


def _wipe_nullifiers(data: Path) -> None:
    with contextlib.closing(sqlite3.connect(data / "nullifiers.sqlite", timeout=30)) as db:
        db.execute("DELETE FROM nullifiers")
        db.commit()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    import registry.cli  # noqa: F401 - before registry.demo (it imports registry.cli._common)
    from registry.demo import _registry_service, _serve
    from registry.ledger.accounts import anvil_dev_account
    from registry.ledger.anvil import AnvilProcess
    from registry.ledger.deploy import deploy_contracts, save_manifest
    from registry.ledger.tx import Transactor
    from eth_account import Account

    from registry.relay.evidence import load_relay_key
    from registry.service.settings import Settings
    from registry.web.app import create_app
    from zk.identity import Identity
    from zk.relay_scope import epoch_at
    from zk.tree import LeanIMT

    report: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="zkid-bench-relay-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        reg, data = root / "registry", root / "relay"
        reg.mkdir()
        data.mkdir()
        anvil = stack.enter_context(AnvilProcess(["--gas-limit", "300000000"], log_file=root / "anvil.log"))
        manifest = deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0), poll_interval=0.02), region="bench")
        save_manifest(reg, manifest)
        save_manifest(data, manifest)
        relay_key = load_relay_key(data)

        settings = Settings(
            data_dir=reg, rpc_url=anvil.rpc_url, region="bench", confirmations=1, poll_interval=0.1,
            batch_interval=0.3, epoch_length=EPOCH_LENGTH, message_limit=args.slots,
            anchor_interval=0.0, anchor_min_growth=100_000, anchor_max_delay=5.0,
            ip_limit_exempt=["127.0.0.0/8"], relay_keys=[Account.from_key(relay_key).address],
            evidence_rate=1_000_000.0, evidence_burst=1_000_000,
        )
        service = stack.enter_context(_registry_service(settings))
        service.open_default_group()  # as `zkid up` does: group 0 is open (docs/admission.md)
        registry_url = stack.enter_context(_serve(create_app(service, settings)))
        http = stack.enter_context(httpx.Client(base_url=registry_url, timeout=60.0))
        people = [Identity(f"bench-relay-{i}") for i in range(args.identities)]
        r = http.post("/v1/groups/0/members", json={"commitments": [str(p.commitment) for p in people]})
        assert r.status_code == 202, r.text
        tree = LeanIMT(leaves=[p.commitment for p in people])
        deadline = time.monotonic() + 120
        while http.get("/v1/groups/0").json()["root"] != str(tree.root):
            if time.monotonic() > deadline:
                raise RuntimeError("the registrations were not anchored")
            time.sleep(0.2)
        t = time.perf_counter()
        proofs = _proofs(people, args.slots, manifest.chain_id, manifest.address("ZkIdRegistry"),
                         epoch_at(time.time(), EPOCH_LENGTH), args.workers)
        report["proving_s"] = round(time.perf_counter() - t, 1)
        report["verify_ceiling"] = verify_ceiling([p for p, _ in proofs], args.workers)
        profile = None if args.profile is None else args.profile.resolve()
        url, proc = stack.enter_context(_relay_process(data, anvil.rpc_url, registry_url, args.slots, profile))
        points = []
        for rate in [*args.rates, 0.0]:  # 0: as fast as the senders go (closed loop)
            _wipe_nullifiers(data)
            point = _point(url, proofs, rate, args.senders, args.recipients, root, proc.pid)
            points.append(point)
            print(json.dumps(point), file=sys.stderr)
        report["points"] = points
        report["best_blobs_per_s"] = max(p["blobs_per_s"] for p in points)
        if profile is not None:
            profiled = []
            for clock in ("wall", "cpu"):
                _wipe_nullifiers(data)
                point = _profiled_point(proc, profile, clock, lambda: _point(url, proofs, 0.0, args.senders, args.recipients, root, proc.pid))
                profiled.append({"clock": clock, **point})
                print(json.dumps(profiled[-1]), file=sys.stderr)
            report["profiled_points"] = profiled
        # Evidence: every queued record reaches the log (posted in batches). Identical
        # records (the same blob in the same hour, as the points repeat) are one entry.
        t = time.perf_counter()
        pending = None
        while time.perf_counter() - t < 120:
            pending = httpx.get(f"{url}/v1/health", timeout=10).json()["evidence_pending"]
            if pending == 0:
                break
            time.sleep(0.2)
        size = int((http.get("/v1/health").json().get("evidence") or {}).get("size") or 0)
        report["evidence"] = {"pending_at_end": pending, "log_entries": size, "drain_s_after_load": round(time.perf_counter() - t, 1)}
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "load":
        load_main(*argv[1:6])
        return 0
    if argv and argv[0] == "relay":
        relay_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",") if x], default=[100, 200, 300, 400, 500, 600])
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--recipients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=None, help="Write the JSON here (and a PNG plot next to it).")
    parser.add_argument("--profile", type=Path, default=None,
                        help="Profile the relay (yappi) on two extra closed-loop points: PROFILE.wall.txt, PROFILE.cpu.txt.")
    args = parser.parse_args(argv)
    report = run(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        png = args.out.with_suffix(".png")
        if _plot(report, png):
            report["plots"] = {"relay": str(png)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


def _plot(report: dict[str, Any], out_png: Path) -> bool:
    """The load profile (benchmarks/plot.py): blobs/s and p50/p99 per request against the
    offered send rate, the bare verification rate as the ceiling."""
    from benchmarks.plot import plot_load_profile

    points = [
        {"offered": p["offered_per_s"], "per_second": p["blobs_per_s"], "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"]}
        for p in report["points"] if p["offered_per_s"] > 0 and p["p50_ms"] is not None
    ]
    if points:
        plot_load_profile(
            points, "relay: send + pickup + ack per blob", out_png, x_label="offered sends/s (open loop)",
            y_label="blobs completed/s",
            ceiling=max(report["verify_ceiling"]["threads_per_s"], report["verify_ceiling"]["processes_per_s"]),
            ceiling_label="bare verification, same run", latency_target_ms=50.0,
        )
    return bool(points)


if __name__ == "__main__":
    sys.exit(main())
