"""``zkid relay``: run the reference relay (registry/relay/app.py, docs/relay.md)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Optional

import typer

from registry.cli._common import fail


def relay(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", help="TOML settings file, keys as in docs/settings.md (flags win over it).", show_default=False),
    ] = None,
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
    """Run a relay: accept blobs with a send authorization, hand them to the mailbox owner.

    It prints its URL, authorization path, ledger and manifest when it serves, and a line
    when it stops (SIGINT or SIGTERM: exit 0)."""
    import uvicorn

    from registry.cli.service_commands import _bind, _StopSignals
    from registry.relay.app import RelaySettings, create_relay_app
    from registry.relay.config import PARAM_KEYS, load_relay_config
    from registry.storage.access_log import proxy_options

    given = dict(
        region=region, data_dir=data_dir, host=host, port=port, auth=auth, rpc_url=rpc_url, manifest=manifest,
        registry_url=registry_url, evidence_url=evidence_url, chain_id=chain_id, keystore=keystore,
        keystore_password_env=keystore_password_env, retention_hours=retention_hours, max_body_bytes=max_body_bytes,
        body_timeout=body_timeout, rate_limit=rate_limit, send_group=send_group, operator=operator,
        trusted_proxy=trusted_proxy,
    )
    extra: dict[str, Any] = {}  # settings without a flag
    if config is not None:
        try:
            from_file = load_relay_config(config)
        except ValueError as exc:
            fail(str(exc))
        keys = {PARAM_KEYS.get(name, name): name for name in given}
        for key, value in from_file.items():
            name = keys.get(key)
            if name is None:
                extra[key] = value
            else:
                source = ctx.get_parameter_source(name)
                if source is None or source.name == "DEFAULT":
                    given[name] = value  # flags win over the file
    o = SimpleNamespace(**given)
    if o.auth not in ("local", "registry"):
        fail(f"--auth must be local or registry, not {o.auth!r}")
    if o.auth == "registry" and not o.registry_url:
        fail("--auth registry needs --registry-url URL (the registry that authorizes sends; registry_url in --config)")
    if o.auth == "local" and not o.rpc_url:
        fail("--auth local needs --rpc-url URL (the ledger's JSON-RPC endpoint; rpc_url in --config)")
    try:
        # X-Forwarded-For only from the named proxies: uvicorn would believe any peer on
        # 127.0.0.1, letting a client behind a local proxy pick its rate-limited IP.
        proxies = proxy_options(o.trusted_proxy or [])
    except ValueError as exc:
        fail(f"--trusted-proxy: {exc}")
    try:
        settings = RelaySettings(
            data_dir=Path(o.data_dir),
            region=o.region,
            auth_mode=o.auth,
            rpc_url=o.rpc_url,
            manifest_path=None if o.manifest is None else Path(o.manifest),
            registry_url=o.registry_url,
            evidence_url=o.evidence_url,
            chain_id=o.chain_id,
            keystore=None if o.keystore is None else Path(o.keystore),
            keystore_password=os.environ.get(o.keystore_password_env) if o.keystore is not None else None,
            max_body_bytes=o.max_body_bytes,
            body_timeout=o.body_timeout,
            retention_seconds=o.retention_hours * 3600,
            rate_limit=o.rate_limit,
            rate_window=60.0,
            send_groups=None if not o.send_group else tuple(o.send_group),
            operator=o.operator,
            **extra,
        )
        app = create_relay_app(settings)
    except (ValueError, OSError) as exc:
        fail(f"cannot start the relay: {exc}")
    try:
        sock = _bind(o.host, o.port, env=None)  # a busy port: one line naming --port, exit 2
    except typer.Exit:
        app.state.relay.close()  # the stores it opened, before exiting
        raise
    if o.auth == "local" and not o.send_group:
        # Fail closed: on the ledger an admission group looks like any other operator group.
        typer.echo(
            "relay: no --send-group given: local authorization refuses every send (group_not_served); "
            "pass --send-group G for each of the operator's send groups",
            err=True,
        )
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    typer.echo(f"relay:    http://{shown}:{bound_port}  (API /v1, health /v1/health, metrics /metrics)")
    if settings.auth_mode == "local":
        served = ", ".join(str(g) for g in settings.send_groups or ()) or "none"
        typer.echo(f"auth:     local, on the ledger (send groups: {served})")
        typer.echo(f"ledger:   {settings.rpc_url}")
        typer.echo(f"manifest: {settings.manifest_path or settings.data_dir / 'deployment.json'}")
    else:
        typer.echo(f"auth:     registry, through {settings.registry_url}")
    typer.echo(f"data:     {settings.data_dir}  region: {settings.region}")
    relay_state = getattr(app.state, "relay", None)
    if relay_state is not None and relay_state.evidence is not None:
        # The registry's operator must register this address (docs/evidence.md).
        typer.echo(f"relay evidence key: {relay_state.evidence.address} (register it with the registry's --relay-key)")
    sys.stdout.flush()

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # ours: stop in order, then exit 0
            yield

    # Privacy: no access log; the relay's connection log (time, IP) is the only request record.
    # A bounded graceful shutdown: open connections (a client holding a half-sent body)
    # get 5 s, then the stores are closed and checkpointed anyway.
    server = _Server(
        uvicorn.Config(
            app, log_config=None, access_log=False, server_header=False, lifespan="on", timeout_graceful_shutdown=5,
            **proxies,
        )
    )
    signals = _StopSignals()

    def stop(signum: int) -> None:
        server.should_exit = True
        if signum < 0:  # a second signal: do not wait for open connections
            server.force_exit = True

    signals.on_signal = stop
    with signals.installed():
        server.run(sockets=[sock])
    typer.echo("relay stopped")
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    app.command("relay")(relay)
