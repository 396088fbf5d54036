"""The relay's stores under real conditions, with ``zkid relay`` as a real subprocess
(local authorization against the session Anvil):

- after a clean stop (SIGINT) its stores are checkpointed: no ``-wal`` is left, and copies
  of ``nullifiers.sqlite`` and the ``blobs`` directory alone hold the spent nullifier and
  the blob;
- a nullifier store or blob store that is empty, missing or not a database, a fresh
  nullifier store with the right schema in its place (with or without ``stores.json``),
  or a nullifier store lost together with ``stores.json`` stops the relay with one error
  line naming the file and the fix, instead of starting empty (and accepting the spent
  proof again).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from registry.client.api import SendSlots, build_send_authorization
from registry.ledger.anvil import free_port
from registry.ledger.deploy import save_manifest
from tests.registry.relay.support import fresh_nullifier_store
from tests.support.cli import ZKID
from tests.support.net import healthy
from tests.support.registry import deployment_of
from tests.support.wait import wait_until
from zk.identity import Identity
from zk.tree import LeanIMT

EPOCH = 600  # the relay's default epoch length


def _start(data_dir: Path, rpc_url: str, port: int, group: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ZKID, "relay", "--data-dir", str(data_dir), "--rpc-url", rpc_url,
         "--port", str(port), "--evidence-url", "http://127.0.0.1:9/unreachable", "--send-group", str(group)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _serving(proc: subprocess.Popen[str], port: int) -> bool:
    """Wait until the relay answers (True) or exits (False)."""

    def settled() -> str:
        if proc.poll() is not None:
            return "exited"
        return "serving" if healthy(f"http://127.0.0.1:{port}", timeout=2) else ""

    return wait_until(settled, 60, "the relay to serve or exit", interval=0.1) == "serving"


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    code = proc.wait(60)
    output = proc.stdout.read() if proc.stdout is not None else ""
    if proc.stdout is not None:
        proc.stdout.close()
    return code, output


def _count(path: Path, table: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_relay_checkpoints_on_stop_and_refuses_a_lost_store(tmp_path: Path, anvil: Any, deployed: Any, chain: Any) -> None:
    group = deployed.registry.create_group()
    alice = Identity("relay-stores-alice")
    deployed.registry.add_members(group, [alice.commitment])
    tree = LeanIMT(leaves=[alice.commitment])
    data_dir = tmp_path / "relay"
    save_manifest(data_dir, deployed.manifest)

    port = free_port()
    proc = _start(data_dir, anvil.rpc_url, port, group)
    try:
        assert _serving(proc, port), _stop(proc)[1]
        # The spent proof is replayed after restarts below: prove it early in an epoch.
        if EPOCH - time.time() % EPOCH < 120:
            time.sleep(EPOCH - time.time() % EPOCH + 1)
        blob = b"a blob sent once"
        slots = SendSlots(tmp_path / "slots.sqlite")
        proof, digest = build_send_authorization(alice, tree, group, blob, time.time(), slots, registry=deployment_of(deployed.manifest))
        slots.close()
        capability = secrets.token_bytes(32)
        spent = {
            "mailbox": secrets.token_bytes(32).hex(),
            "pickup_hash": hashlib.sha256(capability).hexdigest(),
            "blob": base64.b64encode(blob).decode(),
            "group_id": group,
            "proof": proof.to_dict(),
        }
        r = httpx.post(f"http://127.0.0.1:{port}/v1/blobs", json=spent, timeout=60)
        assert r.status_code == 201, r.text
        assert r.json()["digest"] == digest.hex()
    finally:
        code, output = _stop(proc)
    assert code == 0, output

    for name in ("nullifiers.sqlite", "evidence_queue.sqlite", "access.log.sqlite"):
        wal = data_dir / f"{name}-wal"
        assert not wal.exists() or wal.stat().st_size == 0, f"{name} left its WAL after a clean stop"
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copyfile(data_dir / "nullifiers.sqlite", copies / "nullifiers.sqlite")
    assert _count(copies / "nullifiers.sqlite", "nullifiers") == 1
    assert len(list((data_dir / "blobs").glob("*.blob"))) == 1  # one file per blob (registry/relay/store.py)

    def damaged(
        name: str, damage: Callable[[Path], object], problem: str, restore: Callable[[Path], object] | None = None
    ) -> None:
        path = data_dir / name
        good = None if restore is not None else path.read_bytes()
        damage(path)
        again = _start(data_dir, anvil.rpc_url, port := free_port(), group)
        try:
            if _serving(again, port):
                r = httpx.post(f"http://127.0.0.1:{port}/v1/blobs", json=spent, timeout=60)
                raise AssertionError(f"the relay started on a damaged {name}; the spent proof got {r.status_code} {r.text}")
        finally:
            code, output = _stop(again)
        assert code != 0 and "Traceback" not in output, output
        lines = [line for line in output.splitlines() if line.startswith("zkid: error:")]
        assert len(lines) == 1, output
        assert f"{path} {problem}" in lines[0] and "restore it from a backup" in lines[0], lines[0]
        if restore is not None:
            restore(path)
        else:
            assert good is not None
            path.write_bytes(good)

    damaged("nullifiers.sqlite", lambda p: p.write_bytes(b""), "is empty (0 bytes)")
    damaged("nullifiers.sqlite", os.unlink, "is missing")
    damaged("nullifiers.sqlite", lambda p: p.write_bytes(os.urandom(8192)), "is not an SQLite database")
    moved = data_dir / "blobs.moved"
    damaged("blobs", lambda p: p.rename(moved), "is missing", restore=lambda p: moved.rename(p))
    # A fresh file with the right schema in place of the lost store: it would pass a schema
    # check, and accept the spent proof again.
    damaged("nullifiers.sqlite", fresh_nullifier_store, "is not the store this data directory had")
    # The manifest lost too: the other stores still carry the directory's id.
    manifest = data_dir / "stores.json"
    kept = {manifest: manifest.read_bytes(), data_dir / "nullifiers.sqlite": (data_dir / "nullifiers.sqlite").read_bytes()}
    damaged("nullifiers.sqlite", lambda p: (fresh_nullifier_store(p), manifest.unlink()),
            "is not the store this data directory had", restore=lambda p: [f.write_bytes(b) for f, b in kept.items()])
    # Both the manifest and the nullifier store moved away, so no store id is left to compare:
    # blobs/ and the evidence queue show the relay has run before.
    aside = tmp_path / "aside"
    aside.mkdir()

    def move_both(p: Path) -> None:
        for name in ("stores.json", "nullifiers.sqlite"):
            (data_dir / name).rename(aside / name)

    def restore_both(p: Path) -> None:
        for name in ("stores.json", "nullifiers.sqlite"):
            (aside / name).rename(data_dir / name)

    damaged("nullifiers.sqlite", move_both, "is missing, and so is stores.json", restore=restore_both)

    # Restored: the relay starts and still knows the spent nullifier and the blob.
    proc = _start(data_dir, anvil.rpc_url, port := free_port(), group)
    try:
        assert _serving(proc, port), _stop(proc)[1]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/blobs", json=spent, timeout=60)
        assert r.status_code == 409 and r.json()["error"]["code"] == "nullifier_reused", r.text
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).json()["blobs"] == 1
    finally:
        code, output = _stop(proc)
    assert code == 0, output
