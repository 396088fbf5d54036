"""The local ledger's chain id (``LocalLedger(chain_id=...)``, ``zkid ledger up --chain-id``):
a second region's ledger on the same machine has its own chain id, kept across restarts
(Anvil's state dump does not keep it), and another id for an existing chain is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer

from registry.cli.ledger import register
from registry.ledger.anvil import CHAIN_ID_FILE, DEFAULT_CHAIN_ID, AnvilError, LocalLedger, free_port, make_web3
from tests.support.cli import invoke


def _chain_id(rpc_url: str | None) -> int:
    assert rpc_url is not None
    return int(make_web3(rpc_url, retry=False).eth.chain_id)


def test_a_new_chain_takes_the_chain_id_and_keeps_it_across_restarts(data_dir: Path) -> None:
    port = free_port()
    status, started = LocalLedger(data_dir, port, chain_id=31338).up()
    assert started and status.chain_id == 31338 == _chain_id(status.rpc_url)
    assert (data_dir / CHAIN_ID_FILE).read_text().strip() == "31338"
    assert LocalLedger(data_dir, port).down()
    # A restart without a chain id keeps the chain's (Anvil alone would come back as 31337).
    status, started = LocalLedger(data_dir, port).up()
    assert started and _chain_id(status.rpc_url) == 31338
    # Asking for another id: refused, running or stopped.
    with pytest.raises(AnvilError, match="chain id 31338, not 31339"):
        LocalLedger(data_dir, port, chain_id=31339).up()
    assert LocalLedger(data_dir, port).down()
    with pytest.raises(AnvilError, match="chain id 31338, not 31339"):
        LocalLedger(data_dir, port, chain_id=31339).up()
    assert not LocalLedger(data_dir, port).status().running
    # The same id again is fine.
    status, started = LocalLedger(data_dir, port, chain_id=31338).up()
    assert started and _chain_id(status.rpc_url) == 31338


def test_a_chain_from_before_saved_chain_ids_is_anvils_default(data_dir: Path) -> None:
    port = free_port()
    status, _ = LocalLedger(data_dir, port).up()
    assert _chain_id(status.rpc_url) == DEFAULT_CHAIN_ID
    LocalLedger(data_dir, port).down()
    (data_dir / CHAIN_ID_FILE).unlink()  # a data directory made by an older zkid
    with pytest.raises(AnvilError, match=f"chain id {DEFAULT_CHAIN_ID}, not 31338"):
        LocalLedger(data_dir, port, chain_id=31338).up()


def test_a_chain_id_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chain_id"):
        LocalLedger(tmp_path, free_port(), chain_id=0)


def test_zkid_ledger_up_chain_id(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZKID_ANVIL_BIN", raising=False)
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    port = str(free_port())
    d = ["--data-dir", str(data_dir), "--port", port]

    def run(*args: str) -> Any:
        return invoke(app, args)

    result = run("ledger", "up", *d, "--chain-id", "31338", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chain_id"] == 31338
    assert run("ledger", "down", "--data-dir", str(data_dir)).exit_code == 0
    refused = run("ledger", "up", *d, "--chain-id", "31339")
    assert refused.exit_code == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error: ") and "31338" in lines[0], refused.stderr
