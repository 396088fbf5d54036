"""The local ledger: a detached Anvil whose chain survives a restart."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import ROOT, AnvilError, LocalLedger, anvil_binary, default_data_dir, free_port, make_web3, wait_port_released
from registry.ledger.deploy import ensure_deployment
from registry.ledger.tx import Transactor


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LocalLedger]:
    node = LocalLedger(tmp_path / "data", free_port())
    try:
        yield node
    finally:
        node.down()


def test_binary_comes_from_the_npm_platform_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ZKID_ANVIL_BIN", raising=False)
    path = anvil_binary()
    assert path.is_relative_to(ROOT / "node_modules" / "@foundry-rs")
    assert path.parent.parent.name.startswith("anvil-")
    monkeypatch.setenv("ZKID_ANVIL_BIN", str(tmp_path / "missing" / "anvil"))
    with pytest.raises(AnvilError, match="anvil binary not found"):
        anvil_binary()


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ZKID_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == tmp_path / ".data"
    monkeypatch.setenv("ZKID_DATA_DIR", str(tmp_path / "elsewhere"))
    assert default_data_dir() == tmp_path / "elsewhere"


def test_chain_survives_down_and_up(ledger: LocalLedger) -> None:
    assert not ledger.status().running
    status, started = ledger.up()
    assert started and status.running and status.chain_id == 31337
    assert status.rpc_url == f"http://127.0.0.1:{ledger.port}"
    again, started_again = ledger.up()
    assert not started_again and again.pid == status.pid

    w3 = make_web3(status.rpc_url)
    deployment = ensure_deployment(Transactor(w3, anvil_dev_account()), ledger.data_dir)
    deployment.registry.add_members(0, [1, 2, 3])
    root, head = deployment.registry.root(0), w3.eth.get_block("latest")

    assert ledger.down() is True
    assert not ledger.status().running and ledger.state_file.exists()
    assert ledger.down() is False

    status, started = ledger.up()
    assert started and status.pid != again.pid
    w3 = make_web3(status.rpc_url)
    assert w3.eth.get_block(head["number"])["hash"] == head["hash"]
    found = ensure_deployment(Transactor(w3, anvil_dev_account()), ledger.data_dir)
    assert not found.created and found.registry.root(0) == root
    events = found.registry.group_events(0, 0)
    assert [e.name for e in events] == ["GroupCreated", "MembersAdded"]  # logs survive too


def test_port_in_use_is_refused(ledger: LocalLedger) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ledger.port))
        busy.listen()
        with pytest.raises(AnvilError, match=f"port {ledger.port} .* in use"):
            ledger.up()
    assert not ledger.pid_file.exists()


def test_up_waits_for_a_port_held_by_closing_connections(ledger: LocalLedger) -> None:
    """A port that cannot be bound while nobody listens on it (the half-closed connections
    of a node that just stopped) is waited for instead of refused."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", ledger.port))  # bound without SO_REUSEADDR, never listening
    releaser = threading.Timer(1.0, holder.close)
    releaser.start()
    try:
        started_at = time.monotonic()
        status, started = ledger.up()
        assert started and status.running
        assert time.monotonic() - started_at >= 0.9  # it did wait for the release
    finally:
        releaser.cancel()
        holder.close()


def test_a_listener_on_the_port_ends_the_wait_at_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert wait_port_released(port, timeout=30.0) is False


def test_stale_pid_file_is_ignored(ledger: LocalLedger) -> None:
    ledger.data_dir.mkdir(parents=True)
    # Above the kernel's pid_max (2**22 at most): no process can have this pid.
    ledger.pid_file.write_text(json.dumps({"pid": 2**22 + 7, "port": ledger.port, "host": "127.0.0.1"}))
    assert not ledger.status().running
    status, started = ledger.up()
    assert started and status.running


def test_missing_binary_is_a_clear_error(ledger: LocalLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZKID_ANVIL_BIN", "/nonexistent/anvil")
    with pytest.raises(AnvilError, match="npm ci"):
        ledger.up()
