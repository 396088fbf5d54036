"""``zkid relay``: run the reference relay (registry/relay/app.py, docs/relay.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.cli._common import fail


def relay(
    region: Annotated[str, typer.Option("--region", help="Region tag of this relay (shown in its evidence).")] = "local",
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Blob store, nullifiers, keys, connection log.")] = Path(".relay"),
    host: Annotated[str, typer.Option("--host", help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP port (0: a free one).")] = 9646,
    auth: Annotated[str, typer.Option("--auth", help="Authorization path: local (ledger) or registry.")] = "local",
    rpc_url: Annotated[Optional[str], typer.Option("--rpc-url", help="Ledger JSON-RPC URL (local authorization).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Deployment manifest (default DATA_DIR/deployment.json).")] = None,
    registry_url: Annotated[Optional[str], typer.Option("--registry-url", help="Registry URL (registry authorization).")] = None,
    evidence_url: Annotated[Optional[str], typer.Option("--evidence-url", help="Evidence log URL (POST /v1/evidence); unset: no evidence.")] = None,
    chain_id: Annotated[Optional[int], typer.Option("--chain-id", help="Chain id of evidence records (default: the manifest's).")] = None,
    keystore: Annotated[Optional[Path], typer.Option("--keystore", help="Relay key keystore (default: DATA_DIR/relay.key, generated).")] = None,
    keystore_password_env: Annotated[str, typer.Option("--keystore-password-env", help="Environment variable holding the keystore password.")] = "ZKID_RELAY_PASSWORD",
    retention_hours: Annotated[int, typer.Option("--retention-hours", min=1, help="Undelivered blobs are deleted after this.")] = 168,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest accepted request.")] = 1024 * 1024,
    body_timeout: Annotated[float, typer.Option("--body-timeout", min=0.1, max=3600, help="Seconds a request body may take to arrive (then 408 request_timeout).")] = 30.0,
    rate_limit: Annotated[int, typer.Option("--rate-limit", min=1, help="Requests per client IP per minute, for sends and for reads each (token buckets holding this many).")] = 120,
    send_group: Annotated[
        Optional[list[int]],
        typer.Option(
            "--send-group",
            min=0,
            help="A send group of the operator (local authorization; repeatable; without one, local authorization refuses every send).",
            show_default=False,
        ),
    ] = None,
    operator: Annotated[
        Optional[str],
        typer.Option("--operator", help="The operator's account, admin of the send groups (default: the manifest's deployer).", show_default=False),
    ] = None,
    trusted_proxy: Annotated[
        Optional[list[str]],
        typer.Option(
            "--trusted-proxy",
            help="Reverse proxy (IP or CIDR) whose X-Forwarded-For names the client (repeatable; default: none, the peer address counts).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a relay: accept blobs with a send authorization, hand them to the mailbox owner."""
    import uvicorn

    from registry.storage.access_log import proxy_options
    from registry.relay.app import RelaySettings, create_relay_app

    try:
        # X-Forwarded-For only from the named proxies: uvicorn would believe any peer on
        # 127.0.0.1, letting a client behind a local proxy pick its rate-limited IP.
        proxies = proxy_options(trusted_proxy or [])
    except ValueError as exc:
        fail(f"--trusted-proxy: {exc}")
    try:
        settings = RelaySettings(
            data_dir=data_dir,
            region=region,
            auth_mode=auth,  # type: ignore[arg-type]  # checked by RelaySettings
            rpc_url=rpc_url,
            manifest_path=manifest,
            registry_url=registry_url,
            evidence_url=evidence_url,
            chain_id=chain_id,
            keystore=keystore,
            keystore_password=os.environ.get(keystore_password_env) if keystore is not None else None,
            max_body_bytes=max_body_bytes,
            body_timeout=body_timeout,
            retention_seconds=retention_hours * 3600,
            rate_limit=rate_limit,
            rate_window=60.0,
            send_groups=None if not send_group else tuple(send_group),
            operator=operator,
        )
        app = create_relay_app(settings)
    except (ValueError, OSError) as exc:
        fail(f"cannot start the relay: {exc}")
    if auth == "local" and not send_group:
        # Fail closed: on the ledger an admission group looks like any other operator group.
        typer.echo(
            "relay: no --send-group given: local authorization refuses every send (group_not_served); "
            "pass --send-group G for each of the operator's send groups",
            err=True,
        )
    relay_state = getattr(app.state, "relay", None)
    if relay_state is not None and relay_state.evidence is not None:
        # The registry's operator must register this address (docs/evidence.md).
        typer.echo(f"relay evidence key: {relay_state.evidence.address} (register it with the registry's --relay-key)")
    # Privacy: no access log; the relay's connection log (time, IP) is the only request record.
    # A bounded graceful shutdown: open connections (a client holding a half-sent body)
    # get 5 s, then the stores are closed and checkpointed anyway.
    uvicorn.run(
        app, host=host, port=port, log_config=None, access_log=False, server_header=False, lifespan="on",
        timeout_graceful_shutdown=5, **proxies,
    )


def register(app: typer.Typer) -> None:
    app.command("relay")(relay)
