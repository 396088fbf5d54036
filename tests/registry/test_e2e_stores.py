"""The registry's stores under real conditions, with ``zkid up`` as a real subprocess:

- after a clean stop (SIGINT) every store is checkpointed: no ``-wal`` is left and a copy
  of ``nullifiers.sqlite`` alone holds the spent nullifier; an online backup
  (``Connection.backup``, docs/operations.md) taken while it runs holds it too;
- a nullifier store that is empty, missing or not a database, or a fresh file with its
  schema in its place (with or without ``stores.json``), stops the service with one
  error line naming the file and the fix, instead of starting empty and authorizing the
  spent proof again;
- a corrupt chain index stops it with a line that says to run ``zkid reindex``, and after
  the reindex the spent proof is still refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from registry.ledger.anvil import LocalLedger, free_port
from tests.registry.relay.support import fresh_nullifier_store
from tests.support.cli import ZKID, stop_process
from tests.registry.test_e2e_faults import ROOT, TOKEN, _wait, start_up
from zk.identity import Identity
from zk.proof import generate_proof
from zk.relay_scope import RelayScope, blob_message, epoch_at
from registry.client.api import registry_of
from zk.tree import MerkleProof

# Epochs far longer than the test: the spent proof stays in an acceptable epoch, so a
# second acceptance could only come from a forgotten nullifier.
ENV = {"ZKID_EPOCH_LENGTH": str(10**8)}
DURABLE = ("outbox.sqlite", "nullifiers.sqlite", "evidence.sqlite", "admission.sqlite")


def _authorization(url: str, who: Identity) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=60) as c:
        info = c.get("/v1/groups/0").json()
        r = c.get(f"/v1/groups/0/proofs/{who.commitment}")
        assert r.status_code == 200, r.text
    merkle = MerkleProof.from_dict(r.json()["merkle_proof"])
    digest = hashlib.sha256(b"a blob sent once").digest()
    scope = RelayScope.of(registry_of(info), 0, epoch_at(time.time(), info["epoch_length"]), 0).encode()
    proof = generate_proof(who, merkle, blob_message(digest), scope)
    return {"group_id": 0, "proof": proof.to_dict(), "blob_digest": digest.hex()}


def _nullifiers(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {str(r[0]) for r in db.execute("SELECT nullifier FROM nullifiers")}
    finally:
        db.close()


def _refused_start(data_dir: Path, ledger_port: int, spent: dict[str, Any]) -> tuple[int, str]:
    """Run ``zkid up`` on a damaged data directory; return its exit code and output. If it
    serves instead, ask it to authorize the spent proof and fail with its answer."""
    port = free_port()
    environ = {**os.environ, "ZKID_OPERATOR_TOKEN": TOKEN, **ENV}
    environ.pop("ZKID_DATA_DIR", None)
    proc = subprocess.Popen(
        [*ZKID, "up", "--data-dir", str(data_dir), "--port", str(port), "--ledger-port", str(ledger_port)],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/authorize", json=spent, timeout=60)
                raise AssertionError(f"zkid up started on a damaged store; the spent proof got {r.status_code} {r.text}")
            time.sleep(0.1)
        assert proc.poll() is not None, "zkid up neither served nor exited"
        output = proc.stdout.read() if proc.stdout is not None else ""
        return proc.returncode, output
    finally:
        stop_process(proc)


def _error_line(code: int, output: str) -> str:
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("zkid: error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_clean_stop_checkpoints_and_a_lost_store_stops_the_service(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ledger_port = free_port()
    # One ledger for every run below (each `zkid up` reuses it and leaves it running).
    ledger = LocalLedger(data_dir, ledger_port)
    ledger.up()
    try:
        _check_stores(tmp_path, data_dir, ledger_port)
    finally:
        ledger.down()


def _check_stores(tmp_path: Path, data_dir: Path, ledger_port: int) -> None:
    up = start_up(data_dir, free_port(), ledger_port, **ENV)
    try:
        who = Identity("e2e-stores-sender")
        r = httpx.post(f"{up.url}/v1/groups/0/members", json={"commitments": [str(who.commitment)]}, timeout=30)
        assert r.status_code == 202, r.text
        _wait(
            lambda: httpx.get(f"{up.url}/v1/groups/0/members/{who.commitment}").json().get("index") is not None,
            60, "the member indexed", up,
        )
        spent = _authorization(up.url, who)
        r = httpx.post(f"{up.url}/v1/authorize", json=spent, timeout=60)
        assert r.status_code == 200 and r.json()["authorized"] is True, r.text
        nullifier = r.json()["nullifier"]
        # The documented online backup (includes what is still in the WAL).
        online = tmp_path / "online-backup.sqlite"
        source, target = sqlite3.connect(data_dir / "nullifiers.sqlite"), sqlite3.connect(online)
        source.backup(target)
        source.close()
        target.close()
        assert _nullifiers(online) == {nullifier}
    finally:
        assert up.stop(signal.SIGINT) == 0

    for name in (*DURABLE, "index.sqlite", "access.log.sqlite"):
        assert (data_dir / name).stat().st_size > 0
        wal = data_dir / f"{name}-wal"
        assert not wal.exists() or wal.stat().st_size == 0, f"{name} left its WAL after a clean stop"
    copy = tmp_path / "copy" / "nullifiers.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(data_dir / "nullifiers.sqlite", copy)
    assert _nullifiers(copy) == {nullifier}

    store = data_dir / "nullifiers.sqlite"
    good = store.read_bytes()
    damages = {
        "is empty (0 bytes)": lambda: store.write_bytes(b""),
        "is missing": store.unlink,
        "is not an SQLite database": lambda: store.write_bytes(os.urandom(len(good))),
    }
    for problem, damage in damages.items():
        damage()
        line = _error_line(*_refused_start(data_dir, ledger_port, spent))
        assert f"{store} {problem}" in line and "restore it from a backup" in line, line
        store.write_bytes(good)
    # A fresh file with the nullifier store's schema in its place passes every check above
    # (and would accept spent proofs again): the store id it lacks gives it away, with or
    # without stores.json.
    manifest = data_dir / "stores.json"
    kept = manifest.read_bytes()
    for lose_manifest in (False, True):
        fresh_nullifier_store(store)
        if lose_manifest:
            manifest.unlink()
        line = _error_line(*_refused_start(data_dir, ledger_port, spent))
        assert f"{store} is not the store this data directory had" in line and "restore it from a backup" in line, line
        store.write_bytes(good)
        manifest.write_bytes(kept)

    index = data_dir / "index.sqlite"
    broken = bytearray(index.read_bytes())
    broken[100:] = b"\xa5" * (len(broken) - 100)  # the header survives, the pages do not
    index.write_bytes(bytes(broken))
    line = _error_line(*_refused_start(data_dir, ledger_port, spent))
    assert str(index) in line and "`zkid reindex`" in line, line

    # The suggested fix works, and the rebuilt registry still refuses the spent proof.
    environ = {**os.environ, **ENV}
    environ.pop("ZKID_DATA_DIR", None)
    done = subprocess.run(
        [*ZKID, "reindex", "--data-dir", str(data_dir)],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    again = start_up(data_dir, free_port(), ledger_port, **ENV)
    try:
        r = httpx.post(f"{again.url}/v1/authorize", json=spent, timeout=60)
        assert r.status_code == 409 and r.json()["reason"] == "nullifier_reused", r.text
    finally:
        assert again.stop(signal.SIGINT) == 0
