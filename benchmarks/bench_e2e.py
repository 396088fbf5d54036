"""End-to-end path through one relay: authorize + store + pickup + acknowledge + evidence.

Setup (the real components, as ``zkid demo`` runs them): a throw-away Anvil, the
contracts, the registry service with its evidence log and anchorer served by uvicorn, and
one reference relay (``--auth local``: roots read from the ledger; ``--auth registry``:
the relay asks the registry) posting evidence records to the registry, all on loopback in
this process. ``--identities`` clients are registered in one batch and anchored.

Proofs are made *before* the measured run (in a process pool of ``--workers``) and timed
separately: proving is the client's cost, not the path's. Then each of ``--blobs`` blobs
goes through the whole path, one after the other: ``POST /v1/blobs`` (send authorization
checked, blob stored durably, acceptance record signed and queued), ``GET`` of the
mailbox with the capability (consignment record), ``POST .../ack`` (deleted, access record).
Throughput is blobs/s over that loop; ``with_evidence`` also waits until every evidence
record is in the registry's log and that log is anchored on the ledger.

The share of each part is measured by timing the relay's own components in place:
``verify`` (the Groth16 pairing check the Authorizer runs), ``roots`` (root lookup on the
ledger), ``nullifier`` (durable SQLite claim), ``store`` (blob store put, pickup, delete),
``evidence_sign`` (EIP-712 record hash and native secp256k1 signature),
``evidence_queue_commit`` (the durable queue insert, a group commit), ``evidence`` (the
rest of an emit: building the record, JSON); ``handler_other`` is the
rest of the relay's handlers (parsing, hashing, base64); ``http`` is the client-observed
time minus the handlers' (httpx, uvicorn, FastAPI, JSON, loopback; client and servers
share this process and its GIL). ``--auth registry``: ``roots`` and ``nullifier`` happen
in the registry and are inside the relay's ``remote_authorize`` call instead.

Usage:
    .venv/bin/python -m benchmarks.bench_e2e [--blobs 40] [--identities 10] [--auth local|registry] [--workers 2]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
from eth_account import Account

from registry.service.authorization import Authorizer, SqliteNullifierStore
import registry.cli  # noqa: F401, I001 - before registry.demo (it imports registry.cli._common)
from registry.demo import _registry_service, _serve
from registry.web.app import create_app
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import AnvilProcess
from registry.ledger.deploy import deploy_contracts, save_manifest
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.relay.app import CAPABILITY_HEADER, LEDGER_HEAD_INTERVAL, RelaySettings, create_relay_app
from registry.relay.authorization import LedgerRoots, RegistryAuthClient, ledger_policies
from registry.relay.evidence import load_relay_key
from registry.service.settings import Settings
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof, verify_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message, digest_blob, epoch_at
from zk.tree import LeanIMT

EPOCH_LENGTH = 1_000_000  # one epoch covers the whole run: proofs are made before it
BLOB_BYTES = 1024

T = TypeVar("T")


class Timers:
    """Accumulated seconds per part (thread-safe: handlers run in uvicorn's thread pool)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.seconds[name] += elapsed
                    self.calls[name] += 1

        return timed

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.calls.clear()


def _prove(job: tuple[bytes, list[int], int, bytes, int, tuple[int, str]]) -> tuple[dict[str, Any], float]:
    """Worker: one send authorization (over the locally rebuilt group)."""
    key, leaves, slot, blob, epoch, home = job
    started = time.perf_counter()
    proof = generate_proof(
        Identity(key), LeanIMT(leaves=leaves), blob_message(digest_blob(blob)), RelayScope.of(RegistryRef(*home), 0, epoch, slot).encode()
    )
    return proof.to_dict(), time.perf_counter() - started


@contextlib.contextmanager
def _stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def run(blobs: int, identities: int, auth: str, workers: int) -> dict[str, Any]:
    slots = -(-blobs // identities)
    timers = Timers()
    with tempfile.TemporaryDirectory(prefix="zkid-bench-e2e-") as tmp, _stack() as stack:
        root = Path(tmp)
        reg_dir = root / "registry"
        reg_dir.mkdir()
        anvil = stack.enter_context(AnvilProcess(["--gas-limit", "300000000"], log_file=root / "anvil.log"))
        manifest = deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0), poll_interval=0.02), region="bench")
        save_manifest(reg_dir, manifest)
        settings = Settings(
            data_dir=reg_dir, rpc_url=anvil.rpc_url, region="bench", confirmations=1, poll_interval=0.1,
            batch_interval=0.3, epoch_length=EPOCH_LENGTH, message_limit=max(slots, 1),
            anchor_interval=0.0, anchor_min_growth=100_000, anchor_max_delay=0.5,
            # The load generator and the relays (registry mode) all talk from loopback.
            ip_limit_exempt=["127.0.0.0/8"],
            # The relay's evidence key, registered with the log (else its records wait).
            relay_keys=[Account.from_key(load_relay_key(root / "relay")).address],
        )
        service = stack.enter_context(_registry_service(settings))
        service.open_default_group()  # as `zkid up` does: group 0 is open (docs/admission.md)
        registry_url = stack.enter_context(_serve(create_app(service, settings)))
        http = stack.enter_context(httpx.Client(base_url=registry_url, timeout=60.0))

        # Clients: one registration batch, then wait until the group is on chain.
        people = [Identity() for _ in range(identities)]
        r = http.post("/v1/groups/0/members", json={"commitments": [str(p.commitment) for p in people]})
        assert r.status_code == 202, r.text
        tree = LeanIMT(leaves=[p.commitment for p in people])
        deadline = time.monotonic() + 120
        while http.get("/v1/groups/0").json()["root"] != str(tree.root):
            if time.monotonic() > deadline:
                raise RuntimeError("the registrations were not anchored")
            time.sleep(0.2)

        # Proofs, made before the run and timed on their own.
        epoch = epoch_at(time.time(), EPOCH_LENGTH)
        jobs = []
        payloads = []
        for k in range(blobs):
            blob = secrets.token_bytes(BLOB_BYTES)
            payloads.append(blob)
            home = (manifest.chain_id, manifest.address("ZkIdRegistry"))  # what scopes name (LZE2)
            jobs.append((people[k % identities].private_key, [p.commitment for p in people], k // identities, blob, epoch, home))
        started = time.perf_counter()
        # spawn, not fork: a fork of this threaded process (servers, wasmtime) can deadlock.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            made = list(pool.map(_prove, jobs))
        proving_wall = time.perf_counter() - started
        proofs = [SemaphoreProof.from_dict(p) for p, _ in made]
        per_proof = [s for _, s in made]

        # The relay, with its parts timed in place.
        data = root / "relay"
        save_manifest(data, manifest)
        relay_settings = RelaySettings(
            data_dir=data, region="bench", auth_mode=auth,  # type: ignore[arg-type]
            rpc_url=anvil.rpc_url if auth == "local" else None,
            registry_url=registry_url if auth == "registry" else None,
            evidence_url=registry_url, chain_id=manifest.chain_id,
            epoch_length=EPOCH_LENGTH, message_limit=max(slots, 1), rate_limit=1_000_000, evidence_interval=0.2,
        )
        if auth == "local":
            roots = LedgerRoots(RegistryContract(anvil.w3, manifest.address("ZkIdRegistry")), head_interval=LEDGER_HEAD_INTERVAL)
            roots.root_status = timers.wrap("roots", roots.root_status)  # type: ignore[method-assign]
            nullifiers = SqliteNullifierStore(data / "nullifiers.sqlite")
            nullifiers.claim = timers.wrap("nullifier", nullifiers.claim)  # type: ignore[method-assign]
            authorizer: Any = Authorizer(
                ledger_policies(roots, EPOCH_LENGTH, max(slots, 1), 30), roots, nullifiers,
                verify=timers.wrap("verify", verify_proof),
                registry=RegistryRef(manifest.chain_id, manifest.address("ZkIdRegistry")),
            )
        else:
            authorizer = RegistryAuthClient(registry_url)
            authorizer.authorize = timers.wrap("remote_authorize", authorizer.authorize)
        app = create_relay_app(relay_settings, authorizer=authorizer)
        relay = app.state.relay
        # delete's erase only: delete runs the ack's evidence emit (timed as evidence) first.
        for name in ("put", "pickup", "_erase"):
            setattr(relay.store, name, timers.wrap("store", getattr(relay.store, name)))
        assert relay.evidence is not None
        relay.evidence.emit = timers.wrap("evidence", relay.evidence.emit)
        # Inside emit: the signature, and the (group) commit of the queue row.
        relay.evidence._signer.sign = timers.wrap("evidence_sign", relay.evidence._signer.sign)
        relay.evidence._commit = timers.wrap("evidence_queue_commit", relay.evidence._commit)
        for name in ("submit", "pickup", "ack"):
            setattr(relay, name, timers.wrap("handlers", getattr(relay, name)))
        relay_url = stack.enter_context(_serve(app))
        client = stack.enter_context(httpx.Client(base_url=relay_url, timeout=60.0))

        # Warm-up: one request of each kind that is not part of the figures.
        client.get("/v1/health")
        timers.reset()

        client_seconds = 0.0
        ok = 0
        start = time.perf_counter()
        for proof, blob in zip(proofs, payloads):
            secret = secrets.token_bytes(32)
            tag = secrets.token_bytes(32)
            body = {
                "mailbox": tag.hex(), "pickup_hash": hashlib.sha256(secret).hexdigest(),
                "blob": base64.b64encode(blob).decode(), "group_id": 0, "proof": proof.to_dict(),
            }
            header = {CAPABILITY_HEADER: secret.hex()}
            t = time.perf_counter()
            posted = client.post("/v1/blobs", json=body)
            got = client.get(f"/v1/mailboxes/{tag.hex()}", headers=header)
            blob_id = posted.json().get("id")
            acked = client.post(f"/v1/blobs/{blob_id}/ack", headers=header)
            client_seconds += time.perf_counter() - t
            if posted.status_code == 201 and got.status_code == 200 and len(got.json()["blobs"]) == 1 and acked.status_code == 200:
                ok += 1
        sync_seconds = time.perf_counter() - start
        parts = dict(timers.seconds)
        calls = dict(timers.calls)

        # Evidence: every record in the registry's log, then the log anchored.
        expected = 3 * blobs
        deadline = time.monotonic() + 120
        size = anchored = 0
        while time.monotonic() < deadline:
            ev = http.get("/v1/health").json().get("evidence") or {}
            size, anchored = int(ev.get("size") or 0), int(ev.get("anchored_size") or 0)
            if size >= expected and anchored == size:
                break
            time.sleep(0.05)
        logged_seconds = time.perf_counter() - start

    handlers = parts.pop("handlers", 0.0)
    # Nested timers: emit's own remainder (record construction, JSON) is "evidence".
    parts["evidence"] = max(parts.get("evidence", 0.0) - parts.get("evidence_sign", 0.0)
                            - parts.get("evidence_queue_commit", 0.0), 0.0)
    measured = {k: v for k, v in parts.items()}
    inner = sum(measured.values())
    breakdown = {**measured, "handler_other": max(handlers - inner, 0.0), "http": max(client_seconds - handlers, 0.0)}
    total = sum(breakdown.values())
    return {
        "auth": auth,
        "blobs": blobs,
        "completed": ok,
        "identities": identities,
        "blob_bytes": BLOB_BYTES,
        "proving": {
            "proofs": len(per_proof),
            "workers": workers,
            "mean_s_per_proof": round(sum(per_proof) / len(per_proof), 4),
            "wall_s": round(proving_wall, 3),
        },
        "path_blobs_per_s": round(ok / sync_seconds, 2),
        "path_ms_per_blob": round(1000 * client_seconds / max(ok, 1), 2),
        "with_evidence_blobs_per_s": round(ok / logged_seconds, 2),
        "evidence_records": size,
        "anchored_size": anchored,
        "share_of_path": {k: round(v / total, 3) for k, v in sorted(breakdown.items())},
        "ms_per_blob": {k: round(1000 * v / max(ok, 1), 3) for k, v in sorted(breakdown.items())},
        "calls": calls,
        "note": "proving not in the path (client side, pre-generated); client and servers in one process",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--blobs", type=int, default=40)
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--auth", choices=("local", "registry"), default="local")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    if args.blobs < 1 or args.identities < 1 or args.workers < 1:
        parser.error("--blobs, --identities and --workers must be positive")
    result = run(args.blobs, args.identities, args.auth, args.workers)
    print(json.dumps(result, indent=1))
    return 0 if result["completed"] == args.blobs and result["anchored_size"] == 3 * args.blobs else 1


if __name__ == "__main__":
    sys.exit(main())
