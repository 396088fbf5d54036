"""Helpers of the relay tests: a relay served on loopback against the session Anvil."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from registry.ledger.deploy import save_manifest
from registry.relay.app import Relay, RelaySettings, create_relay_app
from tests.registry.http_support import serve_app


class OffsetClock:
    """Wall time plus an offset the test moves (the relay's clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.contextmanager
def running_relay(
    data_dir: Path, rpc_url: str, manifest: Any, clock: OffsetClock | None = None, **overrides: Any
) -> Iterator[tuple[str, Relay, FastAPI]]:
    save_manifest(data_dir, manifest)
    # Relay tests create their groups as they go and have no admission groups: every
    # operator group is a send group unless a test lists them (send_groups=...).
    values: dict[str, Any] = {"data_dir": data_dir, "rpc_url": rpc_url, "region": "test-relay"}
    if "send_groups" not in overrides:
        values["all_operator_groups"] = True
    values.update(overrides)
    app = create_relay_app(RelaySettings(**values), clock=clock or OffsetClock())
    with serve_app(app) as url:
        yield url, app.state.relay, app
