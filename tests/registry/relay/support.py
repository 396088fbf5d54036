"""Helpers of the relay tests: a relay served on loopback against the session Anvil."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from registry.ledger.deploy import save_manifest
from registry.relay.app import Relay, RelaySettings, create_relay_app
from tests.support.clock import OffsetClock
from tests.support.net import serve_app


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
