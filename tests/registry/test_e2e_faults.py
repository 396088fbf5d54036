"""End to end with faults: ``zkid up`` as a real subprocess on free loopback ports.

- SIGKILL of the service while batches are in flight, then a restart: every accepted
  registration ends up on chain exactly once.
- The ledger stopped for a while: registrations are still accepted (202), /v1/health says
  degraded, and anchoring resumes when the ledger is back.
- SIGINT (Ctrl-C) and SIGTERM stop everything cleanly with exit code 0; the ledger is
  stopped on exit only if that run started it.
"""

from __future__ import annotations

import hashlib
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

from registry.ledger.anvil import LocalLedger, free_port, make_web3, port_in_use
from registry.ledger.deploy import load_manifest
from registry.ledger.registry_contract import RegistryContract
from tests.registry.conftest import make_commitments
from tests.registry.evidence.support import RELAY, RELAY_KEY
from zk.evidence.record import EventType, EvidenceRecord, sign_record
from tests.support.cli import ZKID, run_zkid
from tests.support.wait import wait_until
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
            raise AssertionError(f"zkid up did not stop on signal {sig}; log:\n{self.log_tail()}") from None

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"zkid up exited ({self.proc.returncode}); log:\n{self.log_tail()}")


def _wait(predicate: Callable[[], Any], timeout: float, what: str, up: Up | None = None) -> Any:
    """``wait_until`` for HTTP predicates, failing early (with its log) if ``up`` exits."""
    return wait_until(predicate, timeout, what, interval=0.1, ignore=(httpx.HTTPError,),
                      check=up.check_running if up else None, detail=up.log_tail if up else None)


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
            [*ZKID, "up", "--data-dir", str(data_dir), "--port", str(port), "--ledger-port", str(ledger_port)],
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
    # No block timer (zkid up's idle mining): blocks come only when the test mines them.
    up = start_up(data_dir, free_port(), ledger_port, ZKID_BATCH_SIZE="15", ZKID_LEDGER_BLOCK_TIME="0")
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
    again = start_up(data_dir, free_port(), ledger_port, ZKID_BATCH_SIZE="15", ZKID_LEDGER_BLOCK_TIME="0")
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


def _evidence_record(i: int) -> str:
    """A relay-signed acceptance record of now (the relay key is registered with the run)."""
    rec = EvidenceRecord(
        chain_id=31337,
        event=EventType.RELAY_ACCEPTANCE,
        event_time=int(time.time()),
        issuer=RELAY,
        blob_digest=hashlib.sha256(b"outage blob %d" % i).digest(),
        region="local",
    )
    return sign_record(rec, RELAY_KEY).to_json()


def test_ledger_outage_then_recovery(data_dir: Path) -> None:
    """The local Anvil really stopped (SIGTERM) and started again: registrations and
    evidence records are accepted meanwhile, health says why it is degraded, and both
    are anchored once the ledger is back."""
    ledger_port = free_port()
    up = start_up(
        data_dir, free_port(), ledger_port,
        ZKID_RELAY_KEYS=RELAY, ZKID_ANCHOR_MIN_GROWTH="1", ZKID_ANCHOR_INTERVAL="0",
    )
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
        assert health["ledger"] == "down" and "ledger_down" in health["reasons"]
        for i in range(3):
            r = httpx.post(f"{up.url}/v1/evidence", content=_evidence_record(i), timeout=30)
            assert r.status_code == 201, r.text  # durable in the log without the ledger
        second = [Identity(f"e2e-outage-b{i}").commitment for i in range(5)]
        _register(up.url, second)
        assert set(_statuses(up.url, second)) == {"pending"}
        r = httpx.get(f"{up.url}/v1/groups/0/proofs/{second[0]}", timeout=30)
        assert r.status_code == 409 and r.json()["error"]["code"] == "pending"
        assert httpx.get(f"{up.url}/v1/groups/0/members/{first[0]}").status_code == 200

        ledger.up()
        _wait(lambda: "pending" not in _statuses(up.url, second), 120, "anchoring after the outage", up)
        _wait(lambda: httpx.get(f"{up.url}/v1/health").json()["status"] == "ok", 60, "healthy again", up)
        _wait(
            lambda: (httpx.get(f"{up.url}/v1/health").json()["evidence"] or {}).get("anchored_size") == 3,
            120, "the evidence anchored after the outage", up,
        )
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


def test_walkthrough_register_wait_in_a_group_of_5000(data_dir: Path) -> None:
    """The README's `zkid register --wait` in a group that already has 5,000 members: one
    member into a deep tree costs far more gas than a small group's, and must still land."""
    ledger_port = free_port()
    up = start_up(data_dir, free_port(), ledger_port, ZKID_CONFIRMATIONS="1")
    try:
        crowd = make_commitments(5_000, seed=31_000)
        for i in range(0, len(crowd), 500):
            _register(up.url, crowd[i : i + 500])
        contract = _contract(data_dir, ledger_port)
        _wait(lambda: contract.size(0) == len(crowd), 300, "5,000 members on chain", up)
        newcomer = Identity("e2e-newcomer").commitment
        done = run_zkid("register", str(newcomer), "--url", up.url, "--wait", "--timeout", "120", "--json", timeout=180)
        assert done.returncode == 0, done.stderr
        assert '"status": "final"' in done.stdout or '"status": "included"' in done.stdout
        assert contract.has_member(0, newcomer) and contract.size(0) == len(crowd) + 1
        proof = httpx.get(f"{up.url}/v1/groups/0/proofs/{newcomer}", timeout=30)
        assert proof.status_code == 200 and proof.json()["merkle_proof"]["leaf"] == str(newcomer)
        assert httpx.get(f"{up.url}/v1/health").json()["status"] == "ok"
    finally:
        assert up.stop(signal.SIGINT) == 0


def test_ledger_killed_and_restored_from_an_older_state_loses_no_registration(data_dir: Path) -> None:
    """kill -9 of the local ledger, which then restarts from its last periodic state dump:
    the batches mined since are gone from the chain. The registry sees the rollback, sends
    them again (exactly once) and never reports a transaction that no longer exists."""
    ledger_port = free_port()
    up = start_up(data_dir, free_port(), ledger_port)
    ledger = LocalLedger(data_dir, ledger_port)
    contract = _contract(data_dir, ledger_port)
    first = [Identity(f"e2e-restore-a{i}").commitment for i in range(6)]
    second = [Identity(f"e2e-restore-b{i}").commitment for i in range(6)]
    try:
        _register(up.url, first)
        _wait(lambda: set(_statuses(up.url, first)) == {"final"}, 120, "first batch final", up)
        assert ledger.down()  # SIGTERM: Anvil dumps its state (what a periodic dump holds)
        older = data_dir / "older-state.json"
        older.write_bytes(ledger.state_file.read_bytes())
        ledger.up()
        _register(up.url, second)
        _wait(lambda: set(_statuses(up.url, second)) == {"final"}, 120, "second batch final", up)
        lost_tx = httpx.get(f"{up.url}/v1/groups/0/members/{second[0]}").json()["tx_hash"]
        status = ledger.status()
        assert status.pid is not None
        os.kill(status.pid, signal.SIGKILL)
        _wait(lambda: not ledger.status().running, 30, "the ledger to die")
        # The kernel may still hold the dead node's half-closed connections on its port.
        _wait(lambda: not port_in_use(ledger_port), 60, "the ledger's port to be released")
        ledger.state_file.write_bytes(older.read_bytes())  # its last dump predates the second batch
        ledger.up()
        assert contract.size(0) == len(first)  # the second batch is gone from the chain

        def settled() -> bool:
            statuses = _statuses(up.url, first + second)
            return set(statuses) == {"final"} and contract.size(0) == len(first) + len(second)

        _wait(settled, 180, "the lost batch anchored again", up)
        w3 = make_web3(f"http://127.0.0.1:{ledger_port}")
        for value in first + second:
            member = httpx.get(f"{up.url}/v1/groups/0/members/{value}").json()
            assert w3.eth.get_transaction_receipt(member["tx_hash"])["status"] == 1  # a real transaction
        # (The resent transaction may have the very hash of the lost one: same nonce, fields
        # and key sign to the same bytes. What matters is that it is on the chain now.)
        assert lost_tx is not None
        assert sorted(contract.index_of(0, v) for v in first + second) == list(range(12))
        _wait(lambda: httpx.get(f"{up.url}/v1/health").json()["outbox_pending"] == 0, 30, "an empty outbox", up)
        assert httpx.get(f"{up.url}/v1/groups/0").json()["size"] == 12
    finally:
        assert up.stop(signal.SIGINT) == 0
