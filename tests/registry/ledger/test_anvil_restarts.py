"""The local ledger keeps its genesis and deployment across restarts and kill -9.

Real Anvil processes on one data directory. Anvil stamps a genesis block with the current
second at each start and keeps it in its dump beside the chain's own; the tests start each
node in a new second so that such a stale genesis differs from the chain's.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hexbytes import HexBytes
from web3 import Web3

from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import AnvilError, LocalLedger, free_port, make_web3
from registry.ledger.deploy import Deployment, ensure_deployment, verify_deployment
from registry.ledger.tx import Transactor


class Ledgers:
    """Starts the data directory's ledger on a fresh port each time; stops it at the end."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.current: LocalLedger | None = None

    def up(self) -> tuple[LocalLedger, Web3]:
        _next_second()
        self.current = LocalLedger(self.data_dir, free_port())
        status, started = self.current.up()
        assert started and status.rpc_url is not None
        return self.current, make_web3(status.rpc_url)

    def kill9(self) -> None:
        assert self.current is not None
        pid = self.current.status().pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        self.current.down()  # reaps it, removes the stale pid file

    def close(self) -> None:
        if self.current is not None:
            self.current.down()


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[Ledgers]:
    nodes = Ledgers(tmp_path / "data")
    try:
        yield nodes
    finally:
        nodes.close()


def _next_second() -> None:
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.02)


def _hash(w3: Web3, block: int | str) -> str:
    return HexBytes(w3.eth.get_block(block)["hash"]).to_0x_hex()


def _deploy(ledger: LocalLedger, w3: Web3) -> Deployment:
    return ensure_deployment(Transactor(w3, anvil_dev_account()), ledger.data_dir, persist=ledger.checkpoint)


def _assert_same_chain(w3: Web3, deployment: Deployment) -> None:
    m = deployment.manifest
    assert _hash(w3, 0) == m.genesis_hash
    assert _hash(w3, "earliest") == m.genesis_hash
    assert HexBytes(w3.eth.get_block(1)["parentHash"]).to_0x_hex() == m.genesis_hash
    assert _hash(w3, m.deployment_block) == m.deployment_block_hash
    assert verify_deployment(w3, m) == []


def _block_zero_entries(state_file: Path) -> list[dict[str, str]]:
    state = json.loads(state_file.read_text())
    return [b["header"] for b in state["blocks"] if int(b["header"]["number"], 16) == 0]


def test_genesis_and_deployment_survive_restarts_and_kill9(ledgers: Ledgers) -> None:
    ledger, w3 = ledgers.up()
    deployment = _deploy(ledger, w3)
    deployment.registry.add_members(0, [1])
    head = int(w3.eth.block_number)
    killed_cycles = {2, 4}
    for cycle in range(7):
        if cycle in killed_cycles:
            ledgers.kill9()
        else:
            ledger.down()
        ledger, w3 = ledgers.up()
        _assert_same_chain(w3, deployment)
        found = _deploy(ledger, w3)
        assert not found.created and found.manifest == deployment.manifest
        now = int(w3.eth.block_number)
        if cycle in killed_cycles:
            # blocks since the last dump may be lost (the registry re-sends), never the deployment
            assert deployment.manifest.deployment_block <= now <= head
        else:
            assert now == head  # a clean stop dumps everything
        found.registry.add_members(0, [100 + cycle])  # a transaction between restarts
        head = int(w3.eth.block_number)


def test_a_stale_genesis_in_the_dump_is_not_loaded(ledgers: Ledgers) -> None:
    ledger, w3 = ledgers.up()
    deployment = _deploy(ledger, w3)
    genesis_timestamp = int(w3.eth.get_block(0)["timestamp"])
    ledger.down()
    ledger, w3 = ledgers.up()  # a new second: Anvil makes a new genesis and dumps it too
    ledger.down()

    state = json.loads(ledger.state_file.read_text())
    zero = [b for b in state["blocks"] if int(b["header"]["number"], 16) == 0]
    assert len(zero) == 2, "anvil no longer dumps a stale genesis; this test needs revisiting"
    # Anvil's dump order is a hash map's: put the stale genesis last, where loading picks it.
    zero.sort(key=lambda b: int(b["header"]["timestamp"], 16) != genesis_timestamp)
    state["blocks"] = [b for b in state["blocks"] if b not in zero] + zero
    ledger.state_file.write_text(json.dumps(state))

    ledger, w3 = ledgers.up()
    _assert_same_chain(w3, deployment)
    assert len(_block_zero_entries(ledger.saved_state_file)) == 1


def test_a_dump_cut_short_restarts_from_the_saved_copy(ledgers: Ledgers) -> None:
    ledger, w3 = ledgers.up()
    deployment = _deploy(ledger, w3)
    ledger.down()
    ledger, w3 = ledgers.up()  # the state of this start is the saved copy
    saved_head = int(w3.eth.block_number)
    _deploy(ledger, w3).registry.add_members(0, [7])
    ledger.down()

    # A kill -9 while Anvil rewrites its dump in place leaves it cut short (injected: the
    # moment cannot be hit on purpose).
    dumped = ledger.state_file.read_bytes()
    ledger.state_file.write_bytes(dumped[: len(dumped) // 2])

    ledger, w3 = ledgers.up()
    _assert_same_chain(w3, deployment)
    assert int(w3.eth.block_number) == saved_head  # what came after the last start is lost
    broken = ledger.data_dir / "anvil-state.broken.json"
    assert broken.read_bytes() == dumped[: len(dumped) // 2]
    ledger.down()
    ledger, w3 = ledgers.up()  # and the repaired chain keeps restarting
    _assert_same_chain(w3, deployment)


def test_an_unreadable_dump_without_a_saved_copy_is_refused(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path / "data", free_port())
    ledger.data_dir.mkdir(parents=True)
    ledger.state_file.write_text('{"block": {"number": "0x')
    with pytest.raises(AnvilError, match="cannot be read .* no saved copy"):
        ledger.up()
    assert ledger.state_file.read_text() == '{"block": {"number": "0x'  # left for the operator
    assert not ledger.status().running and not ledger.pid_file.exists()


def test_a_deployment_survives_a_kill9_right_after_it(ledgers: Ledgers) -> None:
    ledger, w3 = ledgers.up()
    deployment = _deploy(ledger, w3)
    ledgers.kill9()  # long before Anvil's own 30 s dump
    ledger, w3 = ledgers.up()
    _assert_same_chain(w3, deployment)
    assert not _deploy(ledger, w3).created
