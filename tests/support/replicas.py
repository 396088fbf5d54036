"""Several ``zkid serve`` replicas on one PostgreSQL database and one Anvil, each a real
process with its own data directory (the deployment manifest and the evidence log key
copied into each, as docs/deployment.md tells an operator to)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from registry.evidence.log import LOG_KEY_FILE, default_origin, load_or_create_log_key
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import AnvilProcess
from registry.ledger.deploy import Manifest, deploy_contracts, save_manifest
from registry.ledger.tx import Transactor
from tests.support.cli import ZKID, stop_process, wait_serving
from tests.support.net import free_port
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
REGION = "test"


@dataclass
class Replica:
    name: str
    data_dir: Path
    port: int
    log: Path
    env: dict[str, str]
    args: list[str]
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
        wait_serving(self.process, self.port, self.name, self.log, timeout=90)

    def kill(self) -> None:
        """SIGKILL: no lease released, no store closed."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=60)

    def health(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/v1/health", timeout=10)
        data: dict[str, Any] = r.json()
        return data

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ReplicaSet:
    anvil: AnvilProcess
    manifest: Manifest
    database_url: str
    replicas: list[Replica] = field(default_factory=list)

    def leader(self, timeout: float = 60.0) -> Replica:
        """The one live replica whose health says ``leader`` (waits for one)."""
        found: list[Replica] = []

        def one() -> bool:
            found.clear()
            for r in self.replicas:
                if not r.alive:
                    continue
                try:
                    if r.health().get("role") == "leader":
                        found.append(r)
                except httpx.HTTPError:
                    continue
            return len(found) == 1

        wait_until(one, timeout, "exactly one leader", interval=0.1)
        return found[0]


@contextlib.contextmanager
def replica_set(tmp_path: Path, database_url: str, count: int = 3, **settings: str) -> Iterator[ReplicaSet]:
    """``count`` replicas of one registry (``ZKID_*`` ``settings`` for each), started."""
    shared = tmp_path / "deployment"
    shared.mkdir(parents=True)
    with AnvilProcess(["--gas-limit", "300000000"], log_file=tmp_path / "anvil.log") as anvil:
        manifest = deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0), poll_interval=0.01), region=REGION)
        save_manifest(shared, manifest)
        load_or_create_log_key(shared, default_origin(REGION))
        env = {
            **os.environ,
            "ZKID_DATABASE_URL": database_url,
            "ZKID_REGION": REGION,
            "ZKID_CONFIRMATIONS": "1",
            "ZKID_POLL_INTERVAL": "0.2",
            "ZKID_BATCH_INTERVAL": "0.3",
            "ZKID_OPERATOR_TOKEN": "test-operator-token-0123456789",
            **{f"ZKID_{k.upper()}": v for k, v in settings.items()},
        }
        group = ReplicaSet(anvil, manifest, database_url)
        try:
            for i in range(count):
                data_dir = tmp_path / f"replica{i}"
                data_dir.mkdir()
                shutil.copy(shared / LOG_KEY_FILE, data_dir / LOG_KEY_FILE)
                port = free_port()
                args = [
                    *ZKID, "serve", "--rpc-url", anvil.rpc_url, "--manifest", str(shared / "deployment.json"),
                    "--data-dir", str(data_dir), "--port", str(port),
                ]
                replica = Replica(f"replica{i}", data_dir, port, tmp_path / f"replica{i}.log", env, args)
                group.replicas.append(replica)
                replica.start()
            yield group
        finally:
            for r in group.replicas:
                with contextlib.suppress(Exception):
                    r.kill()
