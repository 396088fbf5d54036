"""``zkid relay``: run the reference relay (registry/relay/app.py, docs/relay.md)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from registry.cli._common import TrustedProxy, fail

#: ``--nullifier-authority URL`` (docs/relay.md "One rate limit across relays").
NullifierAuthority = Annotated[
    Optional[str],
    typer.Option(
        "--nullifier-authority",
        metavar="URL",
        help="URL of the groups' home registry: local authorization claims each nullifier there (POST /v1/nullifiers/claim, signed with the relay key) after verifying the proof, so a proof spent at any relay is refused at all; unreachable: sends are refused with 503.",
        show_default=False,
    ),
]


#: ``--trust-list FILE`` (docs/relay.md "Federated relays", docs/regions.md).
TrustListOption = Annotated[
    Optional[Path],
    typer.Option(
        "--trust-list",
        envvar="ZKID_TRUST_LIST",
        help="Trust list of regional registries (TOML, docs/regions.md): a federated relay routes each proof to the registry its scope names, verifying locally and claiming the nullifier there, or asking it to authorize; replaces --auth, --rpc-url, --registry-url, --manifest, --evidence-url, --chain-id, --send-group, --operator, --nullifiers and --nullifier-authority.",
        show_default=False,
    ),
]


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
    keystore_password_env: Annotated[str, typer.Option("--keystore-password-env", metavar="VAR", help="Environment variable holding the keystore password.")] = "ZKID_RELAY_PASSWORD",
    retention_hours: Annotated[int, typer.Option("--retention-hours", min=1, help="Undelivered blobs are deleted after this.")] = 168,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest accepted request.")] = 1024 * 1024,
    body_timeout: Annotated[float, typer.Option("--body-timeout", min=0.1, max=3600, help="Seconds a request body may take to arrive (then 408 request_timeout).")] = 30.0,
    rate_limit: Annotated[int, typer.Option("--rate-limit", metavar="N", min=1, help="Requests per client IP per minute, for sends and for reads each (token buckets holding this many).")] = 120,
    send_group: Annotated[
        Optional[list[int]],
        typer.Option(
            "--send-group",
            metavar="G",
            min=0,
            help="A send group of the operator (local authorization; repeatable; without one, local authorization refuses every send).",
            show_default=False,
        ),
    ] = None,
    operator: Annotated[
        Optional[str],
        typer.Option("--operator", metavar="ADDRESS", help="The operator's account, admin of the send groups (default: the manifest's deployer).", show_default=False),
    ] = None,
    trusted_proxy: TrustedProxy = None,
    nullifiers: Annotated[
        Optional[str],
        typer.Option(
            "--nullifiers",
            metavar="URL",
            envvar="ZKID_RELAY_NULLIFIERS",
            help="postgresql:// URL of a nullifier store shared by the relays of a deployment (local authorization: a proof spent at one is refused at all); default: a SQLite file in DATA_DIR.",
            show_default=False,
        ),
    ] = None,
    nullifier_authority: NullifierAuthority = None,
    trust_list: TrustListOption = None,
) -> None:
    """Run a relay: accept blobs with a send authorization, hand them to the mailbox owner.

    It prints its URL, authorization path, ledger and manifest when it serves, and a line
    when it stops (SIGINT or SIGTERM: exit 0)."""
    flags = {name: value for name, value in locals().items() if name not in ("ctx", "config")}
    from registry.cli.service_commands import _http_server, _StopSignals
    from registry.errors import RegistryError
    from registry.relay.app import create_relay_app
    from registry.relay.config import check_auth, relay_settings

    values, extra = _with_config_file(ctx, config, flags)
    try:
        check_auth(values)
    except ValueError as exc:
        fail(str(exc))
    proxies = _proxy_options(values["trusted_proxy"])
    try:
        settings = relay_settings(values, extra, os.environ)
        app = create_relay_app(settings)
    except (ValueError, OSError, RegistryError) as exc:
        fail(f"cannot start the relay: {exc}")
    sock = _bind_relay(app, values["host"], values["port"])
    _announce_relay(app, settings, sock, bool(values["send_group"]) or settings.trust_list is not None)
    signals = _StopSignals()
    server = _http_server(app, proxies, signals)
    with signals.installed():
        server.run(sockets=[sock])
    typer.echo("relay stopped")
    raise typer.Exit(0)


def _with_config_file(ctx: typer.Context, config: Path | None, flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flags with ``--config``'s keys laid over those left at their default, and the
    file's settings that have no flag (registry/relay/config.py)."""
    from registry.relay.config import load_relay_config, with_config

    if config is None:
        return flags, {}
    try:
        from_file = load_relay_config(config)
    except ValueError as exc:
        fail(str(exc))

    def is_default(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is None or source.name == "DEFAULT"

    return with_config(flags, from_file, is_default)


def _proxy_options(trusted: list[str] | None) -> dict[str, Any]:
    """X-Forwarded-For only from the named proxies: uvicorn would believe any peer on
    127.0.0.1, letting a client behind a local proxy pick its rate-limited IP."""
    from registry.storage.access_log import proxy_options

    try:
        return proxy_options(trusted or [])
    except ValueError as exc:
        fail(f"--trusted-proxy: {exc}")


def _bind_relay(app: Any, host: str, port: int) -> socket.socket:
    """The listening socket; a busy port is one line naming --port (exit 2), after the
    stores the app opened are closed."""
    from registry.cli.service_commands import _bind

    try:
        return _bind(host, port, env=None)
    except typer.Exit:
        app.state.relay.close()
        raise


def _announce_relay(app: Any, settings: Any, sock: socket.socket, send_groups_given: bool) -> None:
    """The start-up lines: where it serves, its authorization path, data and evidence key."""
    if settings.auth_mode == "local" and not send_groups_given:
        # Fail closed: on the ledger an admission group looks like any other operator group.
        typer.echo(
            "relay: no --send-group given: local authorization refuses every send (group_not_served); "
            "pass --send-group G for each of the operator's send groups",
            err=True,
        )
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    typer.echo(f"relay:    http://{shown}:{bound_port}  (API /v1, health /v1/health, metrics /metrics)")
    if settings.trust_list is not None:
        for entry in settings.trust_list:
            groups = ", ".join(str(g) for g in entry.send_groups) or "none"
            listed = f" (send groups: {groups})" if entry.auth == "local" else ""
            typer.echo(f"trusts:   {entry.region} (chain {entry.ref.chain_id}), {entry.auth}{listed}, at {entry.registry_url}")
    elif settings.auth_mode == "local":
        served = ", ".join(str(g) for g in settings.send_groups or ()) or "none"
        typer.echo(f"auth:     local, on the ledger (send groups: {served})")
        typer.echo(f"ledger:   {settings.rpc_url}")
        typer.echo(f"manifest: {settings.manifest_path or settings.data_dir / 'deployment.json'}")
    else:
        typer.echo(f"auth:     registry, through {settings.registry_url}")
    typer.echo(f"data:     {settings.data_dir}  region: {settings.region}")
    relay_state = getattr(app.state, "relay", None)
    issuer = None if relay_state is None else relay_state.evidence_summary()["issuer"]
    if issuer is not None:
        # The registry's operator must register this address (docs/evidence.md).
        typer.echo(
            f"relay evidence key: {issuer} (each registry must list it, e.g. its --relay-key; until one does,"
            " health says evidence_unregistered_key)"
        )
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("relay")(relay)
