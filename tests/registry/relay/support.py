"""Helpers of the relay tests: a relay served on loopback against the session Anvil, a
federated relay's settings, a proof for a send, the flags of ``zkid relay``, and an
upstream that trickles its answers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from registry.ledger.deploy import save_manifest
from registry.relay.app import Relay, RelaySettings, create_relay_app
from registry.relay.config import load_relay_config, with_config
from registry.relay.evidence import KEY_FILE
from registry.relay.trust_list import TrustedRegistry, TrustList
from tests.support.clock import OffsetClock
from tests.support.net import serve_app
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message
from zk.tree import LeanIMT


@contextlib.contextmanager
def running_relay(
    data_dir: Path, rpc_url: str, manifest: Any, clock: OffsetClock | None = None, **overrides: Any
) -> Iterator[tuple[str, Relay, FastAPI]]:
    save_manifest(data_dir, manifest)
    # Relay tests create their groups as they go and have no admission groups: every
    # operator group is a send group unless a test lists them (send_groups=...).
    # Evidence leaves at once (no batch to wait for) unless a test asks for batches.
    values: dict[str, Any] = {
        "data_dir": data_dir, "rpc_url": rpc_url, "region": "test-relay", "evidence_batch_max_wait": 0.0,
    }
    if "send_groups" not in overrides:
        values["all_operator_groups"] = True
    values.update(overrides)
    app = create_relay_app(RelaySettings(**values), clock=clock or OffsetClock())
    with serve_app(app) as url:
        yield url, app.state.relay, app


def fresh_nullifier_store(path: Path) -> None:
    """Replace ``path`` by a new file holding the nullifier store's schema and nothing else."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE nullifiers (group_id INTEGER NOT NULL, nullifier TEXT NOT NULL, epoch INTEGER NOT NULL,"
        " PRIMARY KEY (group_id, nullifier)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX nullifiers_epoch ON nullifiers (group_id, epoch)")
    db.commit()
    db.close()


def send_body(mailbox: bytes, capability: bytes, blob: bytes, group_id: int, proof: Any) -> dict[str, Any]:
    """The JSON body of ``POST /v1/blobs``."""
    return {
        "mailbox": mailbox.hex(),
        "pickup_hash": hashlib.sha256(capability).hexdigest(),
        "blob": base64.b64encode(blob).decode(),
        "group_id": group_id,
        "proof": proof.to_dict(),
    }


def local_entry(region: str, ref: RegistryRef, url: str) -> TrustedRegistry:
    """A trusted region authorized locally whose registry and ledger are both at ``url``
    (a stub upstream): group 0 is its send group."""
    return TrustedRegistry(
        region=region, ref=ref, registry_url=url, rpc_url=url, auth="local", send_groups=(0,), operator="0x" + "cd" * 20
    )


def federated_settings(data_dir: Path, *entries: TrustedRegistry, probe_interval: float = 3600.0) -> RelaySettings:
    """The settings of relay ``edge`` trusting ``entries``, with an evidence key of its own
    in ``data_dir`` (an hourly probe by default: only the start-up one runs in a test)."""
    (data_dir / KEY_FILE).write_text("11" * 32 + "\n")
    return RelaySettings(data_dir=data_dir, region="edge", trust_list=TrustList(list(entries)), probe_interval=probe_interval)


def blob_proof(name: str, ref: RegistryRef, blob: bytes) -> SemaphoreProof:
    """A send proof of ``blob`` by identity ``name``, the only member of group 0 at ``ref``
    (epoch 1, slot 0)."""
    who = Identity(name)
    scope = RelayScope.of(ref, 0, 1, 0).encode()
    return generate_proof(who, LeanIMT(leaves=[who.commitment]).generate_proof(0), blob_message(hashlib.sha256(blob).digest()), scope)


def relay_config_values(data_dir: Path, config: Path, **flags: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``zkid relay``'s option values (local authorization, nothing else given, ``flags``
    added) merged with the config file ``config``, as the command merges them."""
    defaults: dict[str, Any] = {
        "data_dir": str(data_dir), "region": "local", "auth": "local", "rpc_url": "http://127.0.0.1:1",
        "manifest": None, "registry_url": None, "evidence_url": None, "chain_id": None, "keystore": None,
        "keystore_password_env": "ZKID_RELAY_PASSWORD", "max_body_bytes": 1 << 20, "body_timeout": 30.0,
        "retention_hours": 168, "rate_limit": 120, "send_group": [0], "operator": None,
    }
    return with_config({**defaults, **flags}, load_relay_config(config), lambda name: True)


class Trickler:
    """An HTTP server that answers each request with a status line and then one byte per
    0.2 s, until :meth:`release` (then it closes every connection)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.released = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.released.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            while not self.released.wait(0.2):
                conn.sendall(b"X")
        except OSError:
            pass
        finally:
            conn.close()

    def release(self) -> None:
        self.released.set()
        self.sock.close()
