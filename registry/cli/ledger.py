"""``zkid ledger up|down|status`` (the local Anvil ledger) and ``zkid deploy``.

The local ledger keeps its chain in the data directory (``--data-dir``, else
``$ZKID_DATA_DIR``, else ``.data/``), so ``down`` then ``up`` finds the same contracts and
state. ``deploy`` writes ``deployment.json`` there and, run again, reuses it after checking
that the code is still on the chain. Off Anvil, transactions are signed with an encrypted
keystore only (passphrase from ``$ZKID_KEYSTORE_PASSWORD`` or asked); a raw private key on the
command line is refused.

Exit codes: 0 success; 1 ``status`` of a stopped ledger; 2 any error (one line on stderr).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

# Only the light defaults here: the ledger modules (web3, eth-account) are imported by the
# commands that use them, so `zkid --help` and the offline commands do not load them.
from registry.cli._common import AsJson
from registry.ledger.defaults import DEFAULT_BLOCK_TIME, DEFAULT_PORT, DEFAULT_ROOT_WINDOW, PASSWORD_ENV

ledger_app = typer.Typer(
    name="ledger",
    help="The local ledger: an Anvil node whose chain persists in the data directory.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: $ZKID_DATA_DIR or ./.data).", show_default=False),
]
Port = Annotated[
    int,
    typer.Option("--port", help="Port of the local ledger on 127.0.0.1 (default: $ZKID_LEDGER_PORT or 8545).", envvar="ZKID_LEDGER_PORT", min=1, max=65535),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"zkid: error: {message}", err=True)
    raise typer.Exit(code)


def _describe(status: Any) -> str:
    return (
        f"rpc {status.rpc_url}, pid {status.pid}, chain {status.chain_id}, "
        f"block {status.block_number}, data {status.data_dir}"
    )


@ledger_app.command("up")
def ledger_up(
    data_dir: DataDir = None,
    port: Port = DEFAULT_PORT,
    block_time: Annotated[
        int, typer.Option("--block-time", help="Mine a block every this many seconds when idle (0: only for transactions).", min=0)
    ] = DEFAULT_BLOCK_TIME,
    chain_id: Annotated[
        int | None,
        typer.Option("--chain-id", help="Chain id of a new chain (default 31337; an existing chain keeps its own).", min=1, show_default=False),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Start the local ledger (no-op if it already runs)."""
    from registry.ledger.anvil import LocalLedger, default_data_dir
    from registry.ledger.errors import LedgerError

    try:
        ledger = LocalLedger(data_dir or default_data_dir(), port, block_time=block_time, chain_id=chain_id)
        status, started = ledger.up()
    except (LedgerError, OSError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({**status.to_dict(), "started": started}))
    else:
        typer.echo(f"ledger {'started' if started else 'already running'}: {_describe(status)}")


@ledger_app.command("down")
def ledger_down(data_dir: DataDir = None) -> None:
    """Stop the local ledger; its chain is saved in the data directory."""
    from registry.ledger.anvil import LocalLedger, default_data_dir
    from registry.ledger.errors import LedgerError

    ledger = LocalLedger(data_dir or default_data_dir())
    try:
        was_running = ledger.down()
    except (LedgerError, OSError) as exc:
        _fail(str(exc))
    typer.echo("ledger stopped" if was_running else "ledger was not running")


@ledger_app.command("status")
def ledger_status(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Tell whether the local ledger runs (exit 1 if not)."""
    from registry.ledger.anvil import LocalLedger, default_data_dir

    status = LocalLedger(data_dir or default_data_dir()).status()
    if as_json:
        typer.echo(json.dumps(status.to_dict()))
    elif status.running:
        typer.echo(f"ledger running: {_describe(status)}")
    else:
        typer.echo(f"ledger stopped (data {status.data_dir})")
    if not status.running:
        raise typer.Exit(1)


def _password() -> str:
    value = os.environ.get(PASSWORD_ENV)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        _fail(f"no keystore passphrase: set {PASSWORD_ENV} or run in a terminal")
    answer: str = typer.prompt("Keystore passphrase", hide_input=True)
    return answer


def deploy(
    data_dir: DataDir = None,
    rpc_url: Annotated[
        str | None,
        typer.Option("--rpc-url", help="EVM JSON-RPC endpoint (default: the local ledger, started if needed)."),
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option("--keystore", help=f"Encrypted keystore of the deployer (passphrase: ${PASSWORD_ENV})."),
    ] = None,
    port: Port = DEFAULT_PORT,
    region: Annotated[str, typer.Option("--region", help="Region tag recorded in the manifest.")] = "local",
    root_window: Annotated[
        int, typer.Option("--root-window", help="Seconds a superseded root of group 0 stays valid.", min=0)
    ] = DEFAULT_ROOT_WINDOW,
    force: Annotated[bool, typer.Option("--force", help="Deploy anew even if a manifest exists.")] = False,
    private_key: Annotated[str | None, typer.Option("--private-key", hidden=True)] = None,
    as_json: AsJson = False,
) -> None:
    """Deploy the registry contracts (or find the existing deployment) and write the manifest."""
    if private_key is not None:
        _fail("refusing a raw private key on the command line: use --keystore FILE")
    from registry.ledger.accounts import choose_signer
    from registry.ledger.anvil import LocalLedger, default_data_dir, make_web3
    from registry.ledger.artifacts import DEPLOYED_CONTRACTS
    from registry.ledger.deploy import Deployment, check_region, ensure_deployment, manifest_path
    from registry.ledger.errors import LedgerError
    from registry.ledger.tx import Transactor

    directory = data_dir or default_data_dir()
    try:
        check_region(region)
        local: LocalLedger | None = None
        if rpc_url is None:
            local = LocalLedger(directory, port)
            status, _ = local.up()
            assert status.rpc_url is not None
            rpc_url = status.rpc_url
        w3 = make_web3(rpc_url, timeout=120.0)
        password = _password() if keystore is not None else None
        account = choose_signer(w3, keystore, password)
        deployment: Deployment = ensure_deployment(
            Transactor(w3, account),
            directory,
            region=region,
            root_window=root_window,
            force=force,
            persist=None if local is None else local.checkpoint,
        )
    except (LedgerError, ValueError, OSError) as exc:
        _fail(str(exc))
    m = deployment.manifest
    if as_json:
        typer.echo(json.dumps({"created": deployment.created, "manifest": m.to_dict()}))
        return
    verb = "deployed" if deployment.created else "deployment found"
    typer.echo(f"{verb}: chain {m.chain_id}, block {m.deployment_block}, region {m.region}")
    for name in DEPLOYED_CONTRACTS:
        typer.echo(f"  {name:<18} {m.address(name)}")
    typer.echo(f"  manifest           {manifest_path(directory)}")


def register(app: typer.Typer) -> None:
    """Attach ``ledger`` (up/down/status) and ``deploy`` to the ``zkid`` app."""
    app.add_typer(ledger_app, name="ledger")
    app.command("deploy")(deploy)
