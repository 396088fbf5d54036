"""End to end with faults: ``zkid up`` as a real subprocess on free loopback ports.

- SIGKILL of the service while batches are in flight, then a restart: every accepted
  registration ends up on chain exactly once.
- The ledger stopped for a while: registrations are still accepted (202), /v1/health says
  degraded, and anchoring resumes when the ledger is back.
- SIGINT (Ctrl-C) and SIGTERM stop everything cleanly with exit code 0; the ledger is
  stopped on exit only if that run started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.ledger.anvil import LocalLedger, free_port, make_web3
from registry.ledger.deploy import load_manifest
from registry.ledger.registry_contract import RegistryContract
from tests.registry.http_support import zkid_command
from zk.identity import Identity

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-operator-token-0123456789"


@dataclass
class Up:
    """One ``zkid up`` process."""

    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    ledger_port: int
    log: Path

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"zkid up did not stop on signal {sig}; log:\n{self.log.read_text()[-3000:]}") from None


def _wait(predicate: Callable[[], Any], timeout: float, what: str, up: Up | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up is not None and up.proc.poll() is not None:
            raise AssertionError(f"zkid up exited ({up.proc.returncode}); log:\n{up.log.read_text()[-3000:]}")
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    tail = up.log.read_text()[-3000:] if up is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def start_up(data_dir: Path, port: int, ledger_port: int, **env: str) -> Up:
    log = data_dir.parent / f"{data_dir.name}-up-{time.monotonic_ns()}.log"
    environ = {
        **os.environ,
        "ZKID_OPERATOR_TOKEN": TOKEN,
        "ZKID_CONFIRMATIONS": "1",
        "ZKID_POLL_INTERVAL": "0.1",
        "ZKID_BATCH_INTERVAL": "0.2",
        **env,
    }
    environ.pop("ZKID_DATA_DIR", None)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*zkid_command(), "up", "--data-dir", str(data_dir), "--port", str(port), "--ledger-port", str(ledger_port)],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    up = Up(proc, f"http://127.0.0.1:{port}", data_dir, ledger_port, log)
    _wait(lambda: httpx.get(f"{up.url}/v1/health", timeout=5).status_code == 200, 120, "zkid up to serve", up)
    return up


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "data"
    directory.mkdir()
    yield directory
    LocalLedger(directory).down()  # whatever a test left running (pid file based)


def _contract(data_dir: Path, ledger_port: int) -> RegistryContract:
    manifest = load_manifest(data_dir)
    assert manifest is not None
    return RegistryContract(make_web3(f"http://127.0.0.1:{ledger_port}"), manifest.address("ZkIdRegistry"))


def _register(url: str, values: list[int]) -> None:
    r = httpx.post(f"{url}/v1/groups/0/members", json={"commitments": [str(v) for v in values]}, timeout=30)
    assert r.status_code == 202, r.text


def _statuses(url: str, values: list[int]) -> list[str]:
    with httpx.Client(base_url=url, timeout=30) as c:
        return [c.get(f"/v1/groups/0/members/{v}").json().get("status", "?") for v in values]


def _rpc(ledger_port: int, method: str, *params: Any) -> Any:
    w3 = make_web3(f"http://127.0.0.1:{ledger_port}")
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response.get("result")


def test_sigkill_mid_batch_then_restart_anchors_everything_once(data_dir: Path) -> None:
    ledger_port = free_port()
    up = start_up(data_dir, free_port(), ledger_port, ZKID_BATCH_SIZE="15")
    contract = _contract(data_dir, ledger_port)
    # Mine only on demand: batches wait in the mempool, so the kill lands between
    # "sent" and "included" (and, for later batches, before "sent").
    _rpc(ledger_port, "evm_setAutomine", False)
    in_mempool = lambda: int(_rpc(ledger_port, "eth_getBlockTransactionCountByNumber", "pending"), 16)  # noqa: E731
    values = [Identity(f"e2e-kill-{i}").commitment for i in range(120)]
    for i in range(0, 60, 10):
        _register(up.url, values[i : i + 10])
    _wait(lambda: in_mempool() > 0, 60, "a first batch in the mempool", up)
    _rpc(ledger_port, "evm_mine")
    _wait(lambda: contract.size(0) > 0, 60, "a first batch on chain", up)
    for i in range(60, 120, 10):
        _register(up.url, values[i : i + 10])
    before = in_mempool()
    _wait(lambda: in_mempool() > before, 60, "another batch in flight", up)
    up.proc.kill()
    up.proc.wait(30)
    in_flight = in_mempool()
    assert 0 < contract.size(0) < len(values) and in_flight > 0

    # Restart while the killed run's transactions still wait in the mempool; mine later.
    again = start_up(data_dir, free_port(), ledger_port, ZKID_BATCH_SIZE="15")
    try:
        time.sleep(1.0)  # let the new run reconcile and send what it believes is missing
        _rpc(ledger_port, "evm_mine")
        _rpc(ledger_port, "evm_setAutomine", True)
        _rpc(ledger_port, "evm_mine")
        _wait(
            lambda: "pending" not in _statuses(again.url, values) and contract.size(0) == len(values),
            120, "anchoring after the restart", again,
        )
        _wait(lambda: httpx.get(f"{again.url}/v1/health").json()["outbox_pending"] == 0, 30, "an empty outbox", again)
        _rpc(ledger_port, "evm_mine")  # a duplicate sent late would land now
        assert contract.size(0) == len(values)
        assert sorted(contract.index_of(0, v) for v in values) == list(range(len(values)))
        indexed = httpx.get(f"{again.url}/v1/groups/0").json()
        assert indexed["size"] == len(values)
    finally:
        assert again.stop(signal.SIGINT) == 0
    # The second run found the ledger running (the first one was killed): it leaves it running.
    assert LocalLedger(data_dir, ledger_port).status().running


def test_ledger_outage_then_recovery(data_dir: Path) -> None:
    ledger_port = free_port()
    up = start_up(data_dir, free_port(), ledger_port)
    ledger = LocalLedger(data_dir, ledger_port)
    try:
        first = [Identity(f"e2e-outage-a{i}").commitment for i in range(5)]
        _register(up.url, first)
        _wait(lambda: "pending" not in _statuses(up.url, first), 60, "first registrations anchored", up)

        assert ledger.down()
        health = _wait(
            lambda: (h := httpx.get(f"{up.url}/v1/health", timeout=30).json())["status"] == "degraded" and h,
            60, "degraded health", up,
        )
        assert health["ledger"] == "down"
        second = [Identity(f"e2e-outage-b{i}").commitment for i in range(5)]
        _register(up.url, second)
        assert set(_statuses(up.url, second)) == {"pending"}
        r = httpx.get(f"{up.url}/v1/groups/0/proofs/{second[0]}", timeout=30)
        assert r.status_code == 409 and r.json()["error"]["code"] == "pending"
        assert httpx.get(f"{up.url}/v1/groups/0/members/{first[0]}").status_code == 200

        ledger.up()
        _wait(lambda: "pending" not in _statuses(up.url, second), 120, "anchoring after the outage", up)
        _wait(lambda: httpx.get(f"{up.url}/v1/health").json()["status"] == "ok", 60, "healthy again", up)
        contract = _contract(data_dir, ledger_port)
        assert contract.size(0) == len(first) + len(second)
        assert all(contract.has_member(0, v) for v in first + second)
    finally:
        code = up.stop(signal.SIGINT)
    assert code == 0
    assert "registry stopped" in up.log.read_text() or "ledger stopped" in up.log.read_text()
    # This run started the ledger: it stops it on exit.
    assert not ledger.status().running


def test_sigterm_exits_cleanly_and_restart_resumes(data_dir: Path) -> None:
    ledger_port = free_port()
    port = free_port()
    up = start_up(data_dir, port, ledger_port)
    value = Identity("e2e-sigterm").commitment
    _register(up.url, [value])
    _wait(lambda: _statuses(up.url, [value]) != ["pending"], 60, "anchoring", up)
    assert up.stop(signal.SIGTERM) == 0
    assert not LocalLedger(data_dir, ledger_port).status().running
    again = start_up(data_dir, free_port(), ledger_port)
    try:
        assert _statuses(again.url, [value])[0] in ("included", "final")
        assert httpx.get(f"{again.url}/v1/groups/0").json()["size"] == 1
    finally:
        assert again.stop(signal.SIGINT) == 0
