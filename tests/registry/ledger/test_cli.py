"""``zkid ledger up|down|status`` and ``zkid deploy`` through Typer's runner."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import typer

from registry.cli.ledger import register
from registry.ledger.accounts import anvil_dev_account, write_keystore
from registry.ledger.anvil import LocalLedger, free_port, make_web3
from registry.ledger.deploy import load_manifest
from registry.ledger.registry_contract import RegistryContract
from tests.support.cli import invoke
from tests.support.net import QuietHandler, StubServer


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


@pytest.fixture
def run(cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("ZKID_KEYSTORE_PASSWORD", raising=False)
    monkeypatch.delenv("ZKID_ANVIL_BIN", raising=False)
    def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
        return invoke(cli, args, env)

    return run_cli


def one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error: "), result.stderr
    return str(lines[0])


def test_up_deploy_twice_down_up(run: Any, data_dir: Path) -> None:
    port = str(free_port())
    d = ["--data-dir", str(data_dir)]
    result = run("ledger", "status", *d)
    assert result.exit_code == 1 and "stopped" in result.stdout
    result = run("ledger", "up", *d, env={"ZKID_LEDGER_PORT": port})  # as `zkid up` reads it
    assert result.exit_code == 0 and "ledger started" in result.stdout and f"127.0.0.1:{port}" in result.stdout
    result = run("ledger", "up", *d, "--port", port)
    assert result.exit_code == 0 and "already running" in result.stdout
    result = run("deploy", *d)
    assert result.exit_code == 0 and result.stdout.startswith("deployed: chain 31337"), result.output
    manifest = load_manifest(data_dir)
    assert manifest is not None
    result = run("deploy", *d)
    assert result.exit_code == 0 and result.stdout.startswith("deployment found"), result.output
    assert load_manifest(data_dir) == manifest

    status = json.loads(run("ledger", "status", *d, "--json").stdout)
    registry = RegistryContract(make_web3(status["rpc_url"]), manifest.address("ZkIdRegistry"))
    assert registry.group(0).admin == manifest.deployer

    assert run("ledger", "down", *d).stdout.strip() == "ledger stopped"
    assert run("ledger", "down", *d).stdout.strip() == "ledger was not running"
    assert run("ledger", "up", *d, "--port", port).exit_code == 0
    result = run("deploy", *d, "--json")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["created"] is False and out["manifest"]["contracts"]["ZkIdRegistry"]["address"] == manifest.address("ZkIdRegistry")


def test_deploy_starts_the_local_ledger(run: Any, data_dir: Path) -> None:
    result = run("deploy", "--data-dir", str(data_dir), "--port", str(free_port()), "--region", "test-1")
    assert result.exit_code == 0, result.output
    assert LocalLedger(data_dir).status().running
    manifest = load_manifest(data_dir)
    assert manifest is not None and manifest.region == "test-1"


def test_errors_are_one_line(run: Any, data_dir: Path) -> None:
    d = ["--data-dir", str(data_dir)]
    assert "raw private key" in one_line_error(run("deploy", *d, "--private-key", "0x" + "11" * 32))
    assert "npm ci" in one_line_error(run("ledger", "up", *d, env={"ZKID_ANVIL_BIN": "/nonexistent/anvil"}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert "in use" in one_line_error(run("ledger", "up", *d, "--port", port))
    closed = f"http://127.0.0.1:{free_port()}"
    assert "unreachable" in one_line_error(run("deploy", *d, "--rpc-url", closed))
    assert "region" in one_line_error(run("deploy", *d, "--rpc-url", closed, "--region", "no spaces"))


@pytest.mark.usefixtures("chain")
def test_keystore_deploy(run: Any, anvil: Any, tmp_path: Path) -> None:
    account = anvil_dev_account(8)
    keystore = write_keystore(tmp_path / "deployer.json", account, "correct horse", iterations=2**10)
    assert keystore.stat().st_mode & 0o777 == 0o600
    args = ["deploy", "--data-dir", str(tmp_path / "d"), "--rpc-url", anvil.rpc_url, "--keystore", str(keystore)]
    assert "cannot decrypt" in one_line_error(run(*args, env={"ZKID_KEYSTORE_PASSWORD": "wrong"}))
    assert "passphrase" in one_line_error(run(*args))  # no env, no terminal
    result = run(*args, env={"ZKID_KEYSTORE_PASSWORD": "correct horse"})
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "d")
    assert manifest is not None and manifest.deployer == account.address
    missing = ["deploy", "--data-dir", str(tmp_path / "e"), "--rpc-url", anvil.rpc_url, "--keystore", str(tmp_path / "nope.json")]
    assert "cannot read keystore" in one_line_error(run(*missing, env={"ZKID_KEYSTORE_PASSWORD": "x"}))


class _NotAnvil(QuietHandler):
    """A JSON-RPC endpoint that presents itself as another client (here: geth)."""

    answers = {"web3_clientVersion": "Geth/v1.14.0-stable/linux-amd64/go1.22", "eth_chainId": "0x1"}

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_json(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": self.answers.get(request["method"])}).encode())


def test_other_networks_need_a_keystore(run: Any, tmp_path: Path) -> None:
    server = StubServer(_NotAnvil)
    try:
        message = one_line_error(run("deploy", "--data-dir", str(tmp_path), "--rpc-url", server.url))
        assert "not Anvil" in message and "--keystore" in message
    finally:
        server.close()
