"""Deleted blobs leave no bytes behind (registry/relay/store.py): a real relay process
(local authorization against the session Anvil, real proofs) takes distinctive random
blobs; after an ack, after a retention purge, and after a ``kill -9`` right behind an
ack, every file under its data directory is read while it runs (or right after the
kill) and none holds the blob, its mailbox tag, pickup hash or digest."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from registry.client.api import SendSlots, build_send_authorization
from registry.ledger.anvil import free_port
from registry.ledger.deploy import save_manifest
from registry.relay.store import BlobStore, capability_hash
from tests.support.cli import stop_process
from tests.support.registry import deployment_of
from tests.support.wait import wait_until
from zk.identity import Identity
from zk.tree import LeanIMT

# The real relay (registry/relay/app.py) under uvicorn, with settings the CLI does not
# expose (a retention of seconds, a fast purge loop).
RUNNER = (
    "import json, sys, uvicorn\n"
    "from registry.relay.app import RelaySettings, create_relay_app\n"
    "args = json.loads(sys.argv[1]); port = args.pop('port')\n"
    "app = create_relay_app(RelaySettings(**args))\n"
    "uvicorn.run(app, host='127.0.0.1', port=port, log_config=None, access_log=False, lifespan='on')\n"
)


@dataclass
class Sent:
    id: str
    blob: bytes
    mailbox: bytes
    capability: bytes
    digest: bytes

    def needles(self) -> dict[str, bytes]:
        """Every form in which a trace of this blob could sit in a file."""
        pickup_hash = capability_hash(self.capability)
        out = {"mailbox": self.mailbox, "pickup hash": pickup_hash, "digest": self.digest}
        for name, value in list(out.items()):
            out[f"{name} (hex)"] = value.hex().encode()
        # Chunks of the ciphertext (a store may split it, e.g. SQLite overflow pages).
        for i in range(0, len(self.blob) - 47, 48):
            out[f"blob[{i}:{i + 48}]"] = self.blob[i : i + 48]
        out["blob (base64)"] = base64.b64encode(self.blob)[:64]
        return out


def _traces(data_dir: Path, sent: Sent) -> list[str]:
    """``file: what`` for every trace of ``sent`` in any file under ``data_dir``."""
    found = []
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            path = Path(root) / name
            try:
                content = path.read_bytes()
            except FileNotFoundError:
                continue  # removed while walking
            found += [f"{path.relative_to(data_dir)}: {what}" for what, needle in sent.needles().items() if needle in content]
    return found


@contextmanager
def _relay(data_dir: Path, rpc_url: str, **settings: Any) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    port = free_port()
    args = {"data_dir": str(data_dir), "rpc_url": rpc_url, "port": port, "all_operator_groups": True, **settings}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            def up() -> bool:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    return http.get("/v1/health").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(up, timeout=60, interval=0.1)
            yield proc, http
    finally:
        stop_process(proc)


class Sender:
    def __init__(self, tmp_path: Path, deployed: Any) -> None:
        registry = deployed.registry
        self.group = registry.create_group()
        self.identity = Identity(f"store-{secrets.token_hex(4)}")
        registry.add_members(self.group, [self.identity.commitment])
        self.tree = LeanIMT(leaves=[self.identity.commitment])
        self.slots = SendSlots(tmp_path / f"slots-{self.group}.sqlite")
        self.home = deployment_of(deployed.manifest)

    def send(self, http: httpx.Client, size: int) -> Sent:
        blob, mailbox, capability = secrets.token_bytes(size), secrets.token_bytes(32), secrets.token_bytes(32)
        proof, digest = build_send_authorization(
            self.identity, self.tree, self.group, blob, time.time(), self.slots, registry=self.home
        )
        body = {
            "mailbox": mailbox.hex(),
            "pickup_hash": capability_hash(capability).hex(),
            "blob": base64.b64encode(blob).decode(),
            "group_id": self.group,
            "proof": proof.to_dict(),
        }
        r = http.post("/v1/blobs", json=body)
        assert r.status_code == 201, r.text
        return Sent(r.json()["id"], blob, mailbox, capability, digest)


def _pickup_and_ack(http: httpx.Client, sent: Sent) -> None:
    headers = {"X-Pickup-Capability": sent.capability.hex()}
    blobs = http.get(f"/v1/mailboxes/{sent.mailbox.hex()}", headers=headers).json()["blobs"]
    assert [base64.b64decode(b["blob"]) for b in blobs] == [sent.blob]
    r = http.post(f"/v1/blobs/{sent.id}/ack", headers=headers)
    assert r.status_code == 200 and r.json()["deleted"] is True, r.text


def test_acked_and_purged_blobs_leave_no_bytes(tmp_path: Path, anvil: Any, deployed: Any, chain: Any) -> None:
    sender = Sender(tmp_path, deployed)
    data = tmp_path / "relay"
    save_manifest(data, deployed.manifest)
    with _relay(data, anvil.rpc_url) as (proc, http):
        # Small (inline) and large (spanning pages) ciphertexts, and one left undelivered.
        acked = [sender.send(http, size) for size in (40, 3000, 20000)]
        kept = sender.send(http, 3000)
        for sent in acked:
            _pickup_and_ack(http, sent)
        assert _traces(data, kept), "the check must see a stored blob"  # the search works
        for sent in acked:
            assert _traces(data, sent) == [], sent.id

        # kill -9 right after the ack returned: nothing of it is left either.
        last = sender.send(http, 5000)
        _pickup_and_ack(http, last)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert _traces(data, last) == []
        assert _traces(data, kept)

    # Restarted on the same directory: the undelivered blob is still served.
    with _relay(data, anvil.rpc_url) as (_proc, http):
        _pickup_and_ack(http, kept)
        assert _traces(data, kept) == []

    # Retention: the purge loop deletes them (1 s retention, a purge every 0.2 s).
    purged_dir = tmp_path / "relay-purge"
    save_manifest(purged_dir, deployed.manifest)
    with _relay(purged_dir, anvil.rpc_url, retention_seconds=1, purge_interval=0.2) as (_proc, http):
        purged = [sender.send(http, size) for size in (40, 9000)]
        wait_until(lambda: http.get("/v1/health").json()["blobs"] == 0, timeout=30)
        for sent in purged:
            assert _traces(purged_dir, sent) == [], sent.id
    sender.slots.close()


def test_store_erases_unfinished_files_and_moves_an_old_sqlite_store(tmp_path: Path) -> None:
    # An earlier version's relay.sqlite: its blob is moved into a file, the database erased.
    legacy = tmp_path / "relay.sqlite"
    db = sqlite3.connect(legacy, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        "CREATE TABLE mailboxes (tag BLOB PRIMARY KEY, pickup_hash BLOB NOT NULL, created_at REAL NOT NULL);"
        "CREATE TABLE blobs (id TEXT PRIMARY KEY, mailbox BLOB NOT NULL, blob BLOB NOT NULL, digest BLOB NOT NULL,"
        " received_at REAL NOT NULL, handed_over INTEGER NOT NULL DEFAULT 0, acceptance BLOB);"
    )
    tag, secret, blob = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(500)
    db.execute("INSERT INTO mailboxes VALUES (?, ?, ?)", (tag, capability_hash(secret), 1.0))
    db.execute("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, 1, ?)", ("ab" * 16, tag, blob, hashlib.sha256(blob).digest(), 5.0, b"\x07" * 32))
    db.close()

    store = BlobStore(tmp_path / "blobs", legacy=legacy)
    assert not legacy.exists() and not Path(f"{legacy}-wal").exists()
    [moved] = store.pickup(tag, secret)
    # Its reception time is kept to the hour only (docs/privacy.md).
    assert (moved.id, moved.blob, moved.received_at, moved.handed_over, moved.acceptance) == ("ab" * 16, blob, 0.0, True, b"\x07" * 32)

    # A temporary file (a put cut short) and a half-erased file (a delete cut short) are
    # erased when the store opens; intact blobs are kept with their flags.
    other = store.put(tag, capability_hash(secret), b"second", hashlib.sha256(b"second").digest(), 6.0)
    store.set_acceptance(other, b"\x09" * 32)
    (tmp_path / "blobs" / f"{'cd' * 16}.tmp").write_bytes(b"unfinished " + blob)
    half = tmp_path / "blobs" / f"{'ef' * 16}.blob"
    half.write_bytes((tmp_path / "blobs" / f"{other}.blob").read_bytes()[:-3] + b"\x00\x00\x00")
    store.close()
    again = BlobStore(tmp_path / "blobs")
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == sorted([f"{'ab' * 16}.blob", f"{other}.blob"])
    # Both received in hour 0: within an hour, in random (id) order.
    assert sorted((b.id, b.acceptance) for b in again.pickup(tag, secret)) == sorted([("ab" * 16, b"\x07" * 32), (other, b"\x09" * 32)])
    assert again.purge(3600.0) == 2 and list((tmp_path / "blobs").iterdir()) == []  # their hour is over


def test_blob_files_keep_the_hour_only(tmp_path: Path) -> None:
    """docs/privacy.md: a blob file (mailbox tag inside) holds its reception hour, not the
    second, in its header and in its modification time, also after in-place updates; a
    file of an earlier version with a finer time is rounded when the store opens; a blob
    is purged once the retention has passed since the end of its hour."""
    import os
    import struct

    hour = 400_000 * 3600
    store = BlobStore(tmp_path / "blobs")
    tag, secret = secrets.token_bytes(32), secrets.token_bytes(32)
    blob_id = store.put(tag, capability_hash(secret), b"x" * 10, hashlib.sha256(b"x" * 10).digest(), hour + 1234.567)
    store.set_acceptance(blob_id, b"\x05" * 32)
    store.pickup(tag, secret)  # sets the handed-over flag in place
    path = tmp_path / "blobs" / f"{blob_id}.blob"
    store.pickup(tag, secret)  # a second pickup (not yet acknowledged) only reads the file
    assert os.stat(path).st_atime == float(hour)  # the read did not stamp the moment it happened
    assert struct.unpack(">d", path.read_bytes()[8:16])[0] == float(hour)
    assert os.stat(path).st_mtime == float(hour)
    # The directory's times (stamped by every create and unlink in it) say the hour too.
    assert os.stat(tmp_path / "blobs").st_mtime == os.stat(tmp_path / "blobs").st_atime == float(hour)
    assert store.purge(hour + 3599) == 0 and store.purge(hour + 3600) == 1
    now_hour = int(time.time()) // 3600 * 3600
    assert os.stat(tmp_path / "blobs").st_mtime in (float(now_hour), float(now_hour + 3600))  # the erase's hour
    # A file written with a time to the second (an earlier version) is rounded at open.
    other = store.put(tag, capability_hash(secret), b"y", hashlib.sha256(b"y").digest(), hour)
    store.close()
    path = tmp_path / "blobs" / f"{other}.blob"
    data = bytearray(path.read_bytes())
    data[8:16] = struct.pack(">d", hour + 77.25)
    path.write_bytes(bytes(data))
    again = BlobStore(tmp_path / "blobs")
    assert struct.unpack(">d", path.read_bytes()[8:16])[0] == float(hour)
    assert os.stat(path).st_mtime == float(hour)
    [picked] = again.pickup(tag, secret)
    assert picked.received_at == float(hour)
    again.close()
