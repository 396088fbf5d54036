"""The registry service and its HTTP clients: ``zkid up|serve|reindex``, ``zkid group create``,
``zkid register|status|authorize``.

``zkid up`` is the local all-in-one: it starts the local Anvil ledger of the data
directory (or reuses the one already running there), deploys the contracts if the
directory has no manifest, opens the :class:`~registry.service.RegistryService`, starts
its indexer and batcher and serves the HTTP API (:mod:`registry.web.app`) with uvicorn.
SIGINT or SIGTERM stops everything in order (HTTP, then the background threads) and
exits 0; the ledger is stopped too if this run started it and left running otherwise,
so a restart resumes from the same chain, outbox and index. ``zkid serve`` runs the same
service against any EVM JSON-RPC endpoint and an existing deployment manifest.

Client commands talk to a running registry over HTTP (``--url``, default ``$ZKID_URL``
or ``http://127.0.0.1:9545``). Exit codes: 0 success or "authorized", 1 a negative
answer (refused, not a member, duplicate, timed out waiting), 2 unusable input or an
unreachable registry.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from registry.cli._common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, AsJson, SlotsFile, TrustedProxy, fail, print_json

if TYPE_CHECKING:
    from registry.client import RegistryClient, RegistryClientError

    from registry.service.settings import Settings
    from registry.storage.dir_lock import DataDirLock

DEFAULT_URL = "http://127.0.0.1:9545"
URL_ENV = "ZKID_URL"
TOKEN_ENV = "ZKID_OPERATOR_TOKEN"

log = logging.getLogger("registry.cli.service")

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (default: $ZKID_DATA_DIR or ./.data).", show_default=False)]
Host = Annotated[Optional[str], typer.Option("--host", help="HTTP bind address (default 127.0.0.1).", show_default=False)]
Port = Annotated[Optional[int], typer.Option("--port", help="HTTP port (default 9545; 0 picks a free one).", min=0, max=65535, show_default=False)]
Config = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file (flags and ZKID_* variables win).", show_default=False)]
Region = Annotated[Optional[str], typer.Option("--region", help="Region tag served by the API.", show_default=False)]
TokenEnv = Annotated[
    str, typer.Option("--operator-token-env", help="Environment variable holding the operator token (unset: operator endpoints disabled).")
]
RelayKey = Annotated[
    Optional[list[str]],
    typer.Option("--relay-key", metavar="ADDRESS", help="Relay signing address allowed to append evidence (repeatable; adds to ZKID_RELAY_KEYS / config).", show_default=False),
]
Url = Annotated[Optional[str], typer.Option("--url", help=f"Registry URL (default: ${URL_ENV} or {DEFAULT_URL}).", show_default=False)]
DatabaseUrl = Annotated[
    Optional[str],
    typer.Option(
        "--database",
        help="sqlite: (files in the data directory, the default) or postgresql://user@host:port/db shared by replicas; a password is better given in $ZKID_DATABASE_URL.",
        show_default=False,
    ),
]
Group = Annotated[int, typer.Option("--group", help="Group id.", min=0)]



#: ``zkid up``'s hourly budget on its local ledger (wei): 100 test ether.
LOCAL_SPEND_PER_HOUR = 100 * 10**18

def register(app: typer.Typer) -> None:
    """Attach the service and client commands to ``zkid`` (and ``create`` to ``zkid group``)."""
    from registry.cli import admission_commands
    from registry.cli.zk_commands import group_app

    admission_commands.register(app)
    app.command("up")(up)
    app.command("serve")(serve)
    app.command("reindex")(reindex)
    app.command("migrate")(migrate_command)
    app.command("register")(register_member)
    app.command("status")(member_status)
    app.command("authorize")(authorize)
    group_app.command("create")(group_create)


# ---------------------------------------------------------------------------- settings


def _settings(config: Path | None, token_env: str | None = None, **overrides: Any) -> Settings:
    from pydantic import ValidationError

    from registry.service.settings import load_settings

    if token_env:
        token = os.environ.get(token_env)
        if token is not None:
            if len(token) < 16:
                fail(f"the operator token in ${token_env} is too short (at least 16 characters)")
            overrides["operator_token"] = token
    if config is not None and not config.is_file():
        fail(f"config file {config} not found")
    try:
        return load_settings(config, **overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        where = ".".join(str(p) for p in loc) or "settings"
        if first.get("type") == "extra_forbidden":  # only a file can name an unknown key
            fail(f"{config}: unknown setting {where} (the settings are listed in docs/settings.md)")
        origin = f" (${'ZKID_' + str(loc[0]).upper()}" + (f" or {config}" if config is not None else "") + ")" if loc else ""
        fail(f"invalid setting {where}{origin}: {first.get('msg')}")
    except tomllib.TOMLDecodeError as exc:
        fail(f"{config} is not valid TOML: {exc}")
    except (OSError, ValueError) as exc:
        fail(f"cannot load settings: {exc}")


def _with_relay_keys(settings: Settings, extra: list[str] | None) -> Settings:
    """``--relay-key`` values added to the configured relay keys (checked, EIP-55)."""
    if not extra:
        return settings
    from registry.evidence.admission import relay_address

    try:
        keys = {relay_address(k) for k in extra}
    except ValueError as exc:
        fail(f"--relay-key: {exc}")
    return settings.model_copy(update={"relay_keys": sorted(keys | set(settings.relay_keys))})


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _bind(host: str, port: int, env: str | None = "ZKID_PORT") -> socket.socket:
    """Bind the listening socket ourselves so that port 0 resolves before we print the URL;
    a busy port is one line naming the flag (and ``env``, the variable) to change it, exit 2."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, a response written in two segments
    # (headers, body) waits for the client's delayed ACK (Nagle): ~40 ms per request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            also = f" (or {env})" if env else ""
            fail(f"HTTP port {port} on {host} is already in use: choose another with --port{also}; --port 0 picks a free one")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _StopSignals:
    """SIGINT/SIGTERM set a flag instead of raising, so shutdown runs in order and exits 0."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.on_signal: Callable[[int], None] | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = signum
        if self.on_signal is not None:
            self.on_signal(signum if first else -signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _answered_at_shutdown(app: Any, stopping: Callable[[], bool]) -> Any:
    """``app``, with the requests still running when the graceful shutdown ran out answered
    503 ``shutting_down`` (``Retry-After``). uvicorn cancels them, and would log each
    CancelledError as an application error with a traceback: it is the shutdown working,
    so one warning line, with no request data."""
    import asyncio

    from registry.errors import error_body

    body = error_body("shutting_down", "the server is stopping; retry the request")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), (b"retry-after", b"1")]

    async def answered(scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not stopping() or scope.get("type") != "http":
                raise
            if started:  # its answer was under way: cut off with the connection
                log.warning("a request still open at shutdown was cancelled (its answer cut off)")
                return
            log.warning("a request still open at shutdown was cancelled (answered 503 shutting_down)")
            with contextlib.suppress(Exception):  # the client may be gone already
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})

    return answered


def _http_server(app: Any, proxies: dict[str, Any], signals: _StopSignals) -> Any:
    """The uvicorn server of ``zkid up|serve|relay``: no access log (privacy: the connection
    log is the only request record), no server header, a bounded graceful shutdown (open
    connections get 5 s), X-Forwarded-For only from ``proxies`` (uvicorn would believe any
    peer on 127.0.0.1). A stop signal ends it; a second one does not wait for connections."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # ours (``signals``) are installed instead
            yield

    from registry.web.connections import server_options

    # Header timeout and per-peer connection cap (registry/web/connections.py).
    limits = server_options(proxies.get("forwarded_allow_ips", []))
    server = _Server(
        uvicorn.Config(
            _answered_at_shutdown(app, lambda: bool(server.should_exit)), log_config=None, access_log=False, server_header=False, timeout_graceful_shutdown=5,
            lifespan="on", **proxies, **limits,
        )
    )

    def stop(signum: int) -> None:
        server.should_exit = True
        if signum < 0:  # a second signal: do not wait for open connections
            server.force_exit = True

    signals.on_signal = stop
    return server


def _run(
    settings: Settings,
    ledger_info: str,
    signals: _StopSignals,
    *,
    local: bool = False,
    sock: socket.socket | None = None,
    dir_lock: DataDirLock | None = None,
) -> None:
    """Open the service, start its threads, serve HTTP until a stop signal, stop in order.

    ``sock``: the HTTP socket, bound before the ledger was started (else bound here);
    ``dir_lock``: the data directory's lock, taken by the caller (else by the service).

    ``local`` (`zkid up`): the deployment's group 0 is ``open`` unless the operator set a
    policy (docs/admission.md), and the start-up lines say so."""
    import sqlite3

    from registry.storage.access_log import proxy_options
    from registry.storage.database import redact_url
    from registry.web.app import create_app
    from registry.service.facade import RegistryError, RegistryService

    try:
        service = RegistryService.open(settings, dir_lock=dir_lock)
    except (RegistryError, ValueError, OSError) as exc:
        fail(f"cannot open the registry: {exc}")
    except sqlite3.OperationalError as exc:  # the PostgreSQL server does not answer
        where = redact_url(settings.database) if settings.database else str(settings.data_dir)
        fail(f"cannot open the registry: the database {where} does not answer ({exc})")
    except Exception as exc:  # ledger errors, missing manifest...
        fail(f"cannot open the registry: {type(exc).__name__}: {exc}")
    try:
        app = create_app(service, settings)
        if sock is None:
            sock = _bind(settings.host, settings.port)
        server = _http_server(app, proxy_options(settings.trusted_proxies), signals)
        if signals.received is not None:
            return
        service.start()
        _announce_registry(service, app, settings, sock, ledger_info, local)
        server.run(sockets=[sock])
    finally:
        signals.on_signal = None
        service.stop()
        service.close()
        log.info("registry stopped")


def storage_lines(settings: Settings) -> str:
    """The start-up line(s) saying where the state lives: the data directory and, on
    PostgreSQL, the database shared by the replicas (its password hidden), so that a
    replica's start-up does not suggest its state is in the data directory."""
    lines = f"data:     {settings.data_dir}  region: {settings.region}"
    if settings.database is not None:
        from registry.storage.database import redact_url

        lines += (
            f"\ndatabase: {redact_url(settings.database)}  (shared by the replicas; the lease holder"
            " writes to the ledger: `role` in /v1/health)"
        )
    return lines


def _announce_registry(service: Any, app: Any, settings: Settings, sock: socket.socket, ledger_info: str, local: bool) -> None:
    """The start-up lines of ``zkid up|serve``: where it serves, the ledger, the data, the
    default group's admission (``local``) and who may append evidence."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"registry: http://{shown}:{port}  (API /v1, OpenAPI /openapi.json, metrics /metrics)")
    typer.echo(f"ledger:   {ledger_info}")
    typer.echo(storage_lines(settings))
    if local:
        record = service.open_default_group()
        if record.policy == "open":
            typer.echo(
                f"admission: group {record.group_id} is open (the local default: anyone may register, "
                "bounded by the per-IP limits); set a policy with `zkid admission set`"
            )
        else:
            from registry.cli.admission_commands import describe

            typer.echo(f"admission: group {record.group_id}: {describe(record.to_dict())}")
    if settings.operator_token:
        typer.echo("operator endpoints: on (the bearer token from ZKID_OPERATOR_TOKEN or --config)")
    else:
        typer.echo("operator endpoints: off (set ZKID_OPERATOR_TOKEN, 16+ characters, to create groups and set policies)")
    evidence_log = service.evidence
    if evidence_log is not None:
        # The log's verifier key is public: verifiers pin it (`zkid evidence verify --log-key`).
        typer.echo(f"evidence log key: {evidence_log.verifier.vkey()}  (for zkid evidence verify --log-key)")
    admission = getattr(app.state, "evidence_admission", None)
    if admission is not None:
        trusted = admission.trusted()
        if trusted:
            typer.echo(f"evidence: {len(trusted)} relay key(s) may append")
        else:
            typer.echo(
                "evidence: no relay key registered, every record is refused; add one with --relay-key ADDRESS "
                "(a relay prints its address), ZKID_RELAY_KEYS, or PUT /v1/evidence/relays/ADDRESS (operator)"
            )
    sys.stdout.flush()


@contextlib.contextmanager
def _exit_cleanly() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def up(
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    ledger_port: Annotated[Optional[int], typer.Option("--ledger-port", help="Port of the local Anvil (default 8545).", min=1, max=65535, show_default=False)] = None,
    chain_id: Annotated[
        Optional[int],
        typer.Option("--chain-id", help="Chain id of a new local ledger (default 31337; an existing chain keeps its own).", min=1, show_default=False),
    ] = None,
    config: Config = None,
    region: Region = None,
    operator_token_env: TokenEnv = TOKEN_ENV,
    relay_key: RelayKey = None,
    trusted_proxy: TrustedProxy = None,
) -> None:
    """Run the registry on the local ledger: start (or reuse) Anvil, deploy if needed, serve HTTP."""
    from registry.ledger.accounts import choose_signer
    from registry.ledger.anvil import LocalLedger, make_web3
    from registry.ledger.deploy import ensure_deployment
    from registry.ledger.errors import LedgerError
    from registry.ledger.tx import Transactor

    settings = _settings(
        config, operator_token_env, data_dir=data_dir, host=host, port=port, ledger_port=ledger_port, ledger_chain_id=chain_id, region=region,
        trusted_proxies=trusted_proxy or None,
    )
    settings = _with_relay_keys(settings, relay_key)
    if settings.rpc_url is not None:
        fail("`zkid up` runs the local ledger; use `zkid serve --rpc-url` for another network")
    _configure_logging()
    signals = _StopSignals()
    # The data directory first (a second `zkid up` on it must not touch its ledger), then
    # the HTTP port: neither may cost a ledger start and a deployment.
    lock = _lock_data_dir(settings)
    sock = _bind(settings.host, settings.port)
    ledger = LocalLedger(settings.data_dir, settings.ledger_port, block_time=settings.ledger_block_time, chain_id=settings.ledger_chain_id)
    started = False
    with _exit_cleanly(), signals.installed():
        try:
            try:
                status, started = ledger.up(port_flag="--ledger-port")
                assert status.rpc_url is not None
                w3 = make_web3(status.rpc_url, timeout=120.0)
                deployment = ensure_deployment(
                    Transactor(w3, choose_signer(w3, None, None)),
                    settings.data_dir,
                    region=settings.region,
                    persist=ledger.checkpoint,  # the chain holds the contracts before the manifest says so
                )
            except (LedgerError, ValueError, OSError) as exc:
                fail(str(exc))
            if signals.received is None:
                verb = "deployed" if deployment.created else "using deployment"
                typer.echo(f"{verb}: chain {deployment.manifest.chain_id}, registry {deployment.manifest.address('ZkIdRegistry')}")
                mining = f", a block every {settings.ledger_block_time} s when idle" if started and settings.ledger_block_time else ""
                info = f"{status.rpc_url} ({'started' if started else 'already running'}, pid {status.pid}{mining})"
                update: dict[str, Any] = {"rpc_url": status.rpc_url}
                if "spend_per_hour" not in settings.model_fields_set:
                    # The local ledger pays in test ether (10,000 per dev account): a budget
                    # that lets a 100,000-registration load through (docs/operations.md).
                    update["spend_per_hour"] = LOCAL_SPEND_PER_HOUR
                _run(settings.model_copy(update=update), info, signals, local=True, sock=sock, dir_lock=lock)
        finally:
            if started:
                ledger.down()
                typer.echo("ledger stopped (its chain is saved in the data directory)")
            elif _ledger_running(ledger):
                typer.echo("ledger left running (it was running before `zkid up`)")
            if lock is not None:
                lock.release()  # after the ledger: the next `zkid up` finds it stopped
    raise typer.Exit(EXIT_OK)


def _lock_data_dir(settings: Settings) -> DataDirLock | None:
    """The data directory's lock on SQLite (registry/storage/dir_lock.py), or one line and
    exit 2 when another process holds it. Replicas on PostgreSQL take none."""
    from registry.errors import RegistryError
    from registry.storage.dir_lock import DataDirLock

    if settings.database is not None:
        return None
    try:
        return DataDirLock(settings.data_dir, "registry")
    except (RegistryError, OSError) as exc:
        fail(f"cannot open the registry: {exc}")


def _ledger_running(ledger: Any) -> bool:
    try:
        return bool(ledger.status().running)
    except Exception:  # noqa: BLE001 - only for a closing message
        return False


def serve(
    rpc_url: Annotated[str, typer.Option("--rpc-url", help="EVM JSON-RPC endpoint of the ledger.")],
    manifest: Annotated[Path, typer.Option("--manifest", help="Deployment manifest (deployment.json) of the contracts.")],
    keystore: Annotated[
        Optional[Path], typer.Option("--keystore", help="Encrypted operator keystore (passphrase: $ZKID_KEYSTORE_PASSWORD); required off Anvil.", show_default=False)
    ] = None,
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    config: Config = None,
    region: Region = None,
    operator_token_env: TokenEnv = TOKEN_ENV,
    relay_key: RelayKey = None,
    trusted_proxy: TrustedProxy = None,
    database: DatabaseUrl = None,
) -> None:
    """Run the registry against any EVM network with an existing deployment.

    With --database postgresql://... any number of replicas share one database: all serve
    the API, one at a time (the lease holder) writes to the ledger (docs/deployment.md)."""
    if not manifest.is_file():
        fail(f"manifest {manifest} not found")
    if keystore is not None and not keystore.is_file():
        fail(f"keystore {keystore} not found")
    settings = _settings(
        config,
        operator_token_env,
        data_dir=data_dir,
        host=host,
        port=port,
        region=region,
        rpc_url=rpc_url,
        manifest=manifest.resolve(),
        keystore=keystore.resolve() if keystore is not None else None,
        trusted_proxies=trusted_proxy or None,
        database_url=database,
    )
    settings = _with_relay_keys(settings, relay_key)
    _configure_logging()
    signals = _StopSignals()
    lock = _lock_data_dir(settings)
    sock = _bind(settings.host, settings.port)  # a busy port before the ledger is asked anything
    try:
        with _exit_cleanly(), signals.installed():
            _run(settings, rpc_url, signals, sock=sock, dir_lock=lock)
    finally:
        if lock is not None:
            lock.release()
    raise typer.Exit(EXIT_OK)


def reindex(
    data_dir: DataDir = None,
    config: Config = None,
    rpc_url: Annotated[Optional[str], typer.Option("--rpc-url", help="EVM JSON-RPC endpoint (default: the local ledger).", show_default=False)] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Deployment manifest (default: DATA_DIR/deployment.json).", show_default=False)] = None,
) -> None:
    """Delete the chain index and rebuild it from the ledger (the outbox is kept).

    Run it while the registry is stopped."""
    from registry.ledger.anvil import LocalLedger

    settings = _settings(config, None, data_dir=data_dir, rpc_url=rpc_url, manifest=manifest)
    if settings.rpc_url is None:
        status = LocalLedger(settings.data_dir, settings.ledger_port).status()
        if not status.running:
            fail(f"the local ledger of {settings.data_dir} is not running (start it with `zkid ledger up` or `zkid up`)")
        settings = settings.model_copy(update={"rpc_url": status.rpc_url})
    _configure_logging()
    from registry.errors import RegistryError
    from registry.service import facade as service_module

    t0 = time.monotonic()
    try:
        result = service_module.reindex(settings)
    except RegistryError as exc:  # a registry runs on this data directory: nothing was deleted
        fail(f"cannot reindex: {exc}")
    except Exception as exc:  # noqa: BLE001 - one line for the operator
        fail(f"reindex failed: {type(exc).__name__}: {exc}")
    extra = ", ".join(f"{k} {v}" for k, v in result.items()) if isinstance(result, dict) else ""
    typer.echo(f"index rebuilt from the ledger in {time.monotonic() - t0:.1f} s" + (f": {extra}" if extra else ""))


def migrate_command(
    data_dir: DataDir = None,
    config: Config = None,
    database: DatabaseUrl = None,
    check: Annotated[bool, typer.Option("--check", help="Only report each store's schema version; change nothing (exit 1 if one is behind).")] = False,
) -> None:
    """Bring every store's schema to this version of zkid (replicas also do it at start).

    Refuses (exit 1) a database migrated by a newer zkid."""
    settings = _settings(config, None, data_dir=data_dir, database_url=database)
    _configure_logging()
    from registry.errors import RegistryError
    from registry.service.facade import migrate_stores
    from registry.storage.migrations import SchemaTooNew

    try:
        report = migrate_stores(settings, apply=not check)
    except SchemaTooNew as exc:  # refused, as documented: exit 1 (docs/cli.md)
        fail(f"migrate refused: {exc}", EXIT_INVALID, reason="schema_too_new")
    except RegistryError as exc:  # a registry runs on this data directory
        fail(f"cannot migrate: {exc}")
    except Exception as exc:  # noqa: BLE001 - one line for the operator
        fail(f"migrate failed: {type(exc).__name__}: {exc}")
    behind = [name for name, (found, known) in report.items() if found < known]
    for name, (found, known) in report.items():
        state = "up to date" if found == known else (f"behind ({found} < {known})" if check else f"migrated {found} -> {known}")
        typer.echo(f"{name}: schema {known if not check else found}, {state}")
    if check and behind:
        raise typer.Exit(EXIT_INVALID)


# ---------------------------------------------------------------------------- HTTP clients


def _url(url: str | None) -> str:
    from registry.cli._common import base_url

    return base_url(url or os.environ.get(URL_ENV) or DEFAULT_URL, "--url", "registry")


def not_a_registry(base: str, flag: str = "--url") -> str:
    """The hint for a URL whose API has no registry route: a relay (its health names its
    ``auth_mode``), or something else."""
    from registry.client import RegistryClient, RegistryClientError

    try:
        with RegistryClient(base, timeout=5.0) as client:
            health: Any = client.health()
    except RegistryClientError:
        health = None
    if isinstance(health, dict) and "auth_mode" in health:
        return f"{base} is a relay (region {health.get('region')}), not a registry: {flag} takes the registry's URL (`zkid up` prints it)"
    return f"{base} does not serve the registry API: {flag} takes the registry's base URL, e.g. {DEFAULT_URL}"


@contextlib.contextmanager
def _registry(base: str, code_on_4xx: int = EXIT_INVALID) -> Iterator[RegistryClient]:
    """The SDK's client of the registry at ``base`` (registry/client/); a refusal or an
    unreachable registry ends the command with one line (:func:`_api_fail`)."""
    from registry.client import RegistryClient, RegistryClientError

    with RegistryClient(base) as client:
        try:
            yield client
        except RegistryClientError as exc:
            _api_fail(exc, base, code_on_4xx)


def _api_fail(exc: RegistryClientError, base: str, code_on_4xx: int = EXIT_INVALID) -> NoReturn:
    """One line for a failed request: exit ``code_on_4xx`` for a 4xx refusal, else 2."""
    if exc.status == 0:
        fail(
            f"cannot reach the registry at {base}: {exc.message}; is it running? (`zkid up` prints its URL; "
            f"--url or ${URL_ENV} names another)",
            EXIT_USAGE,
            reason="unreachable",
        )
    if exc.code in ("not_found", "method_not_allowed"):  # no such route: not a registry's API
        fail(not_a_registry(base), EXIT_USAGE, reason="not_a_registry")
    if exc.code in ("bad_response", "http_error"):
        fail(f"{base} answered HTTP {exc.status} without the API's JSON: is it a registry? (--url takes the registry's base URL)", EXIT_USAGE, reason=exc.code)
    fail(f"{exc.code}: {exc.message}" if exc.message else exc.code, code_on_4xx if 400 <= exc.status < 500 else EXIT_USAGE, reason=exc.code)


def _commitment_arg(commitment: str | None, identity: Path | None) -> str:
    from zk.field import FieldError, parse_decimal

    if (commitment is None) == (identity is None):
        fail("give either a COMMITMENT or --identity FILE")
    if identity is not None:
        from registry.cli.zk_commands import load_identity_file

        return str(load_identity_file(identity).commitment)
    assert commitment is not None
    try:
        value = parse_decimal(commitment, "commitment")
    except FieldError as exc:
        fail(str(exc))
    if value == 0:
        fail("commitment must not be 0")
    return commitment


def _show_member(data: dict[str, Any]) -> str:
    parts = [f"status {data.get('status')}"]
    if data.get("index") is not None:
        parts.append(f"index {data['index']}")
    if data.get("block_number") is not None:
        parts.append(f"block {data['block_number']} ({data.get('confirmations', 0)} confirmations)")
    if data.get("tx_hash"):
        parts.append(f"tx {data['tx_hash']}")
    return ", ".join(parts)


def group_create(
    url: Url = None,
    root_window: Annotated[Optional[int], typer.Option("--root-window", help="Seconds a superseded root stays valid (default: the deployment's).", min=0, show_default=False)] = None,
    policy: Annotated[Optional[str], typer.Option("--policy", help="Admission policy: zk, invite, open or closed (default: zk with the registry's admission group, if configured).", show_default=False)] = None,
    admission_group: Annotated[Optional[int], typer.Option("--admission-group", help="Policy zk: the admission group (checked persons).", min=0, show_default=False)] = None,
    round_: Annotated[Optional[int], typer.Option("--round", help="Policy zk: the admission round.", min=0, show_default=False)] = None,
    send: Annotated[Optional[bool], typer.Option("--send/--no-send", help="A send group (default: yes, no for closed).", show_default=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Create a group on a running registry (operator; token from $ZKID_OPERATOR_TOKEN)."""
    from registry.cli.admission_commands import policy_body

    token = os.environ.get(TOKEN_ENV)
    if not token:
        fail(f"set ${TOKEN_ENV} to the registry's operator token")
    body: dict[str, Any] = {} if root_window is None else {"root_window": root_window}
    admission = policy_body(policy, admission_group, round_, send)
    if admission:
        admission.setdefault("policy", "zk")
        body["admission"] = admission
    with _registry(_url(url), EXIT_USAGE) as client:
        data = client.create_group(body, token)
    if as_json:
        print_json(data)
    else:
        from registry.cli.admission_commands import describe

        typer.echo(f"group {data['group_id']} created (root window {data.get('root_window')} s; {describe(data.get('admission'))})")


def register_member(
    commitment: Annotated[Optional[str], typer.Argument(help="Identity commitment (decimal).", show_default=False)] = None,
    url: Url = None,
    group: Group = 0,
    identity: Annotated[Optional[Path], typer.Option("--identity", help="Register this identity file's commitment.", show_default=False)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the commitment is on chain (see --until); progress on stderr.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits at most.", min=0)] = 300.0,
    until: Annotated[
        str,
        typer.Option(
            "--until",
            help="What --wait waits for: included (on chain and indexed: proofs can be made) or final (the confirmation depth reached).",
        ),
    ] = "included",
    invite: Annotated[Optional[str], typer.Option("--invite", help="Invite code (groups with policy invite).", show_default=False)] = None,
    admission_identity: Annotated[
        Optional[Path],
        typer.Option(
            "--admission-identity",
            help="Admission identity file (policy zk): prove membership in the admission group, anonymously "
            "(passphrase: $ZKID_ADMISSION_PASSPHRASE, else $ZKID_PASSPHRASE).",
            show_default=False,
        ),
    ] = None,
    admission_group: Annotated[
        Optional[int], typer.Option("--admission-group", help="With --admission-identity: the admission group it belongs to.", min=0, show_default=False)
    ] = None,
    as_operator: Annotated[
        bool, typer.Option("--as-operator", help="Register as the operator (token from $ZKID_OPERATOR_TOKEN): bypasses the admission policy, e.g. to write an admission group.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Register a commitment in a group (accepted at once, anchored on chain in a batch).

    The group's admission policy decides what is needed: nothing (open), --invite CODE
    (invite), or --admission-identity FILE --admission-group A (zk: an anonymous proof
    that the holder was checked, one registration per round; docs/admission.md)."""
    if until not in _UNTIL:
        fail(f"--until takes included or final, not {until!r}")
    value = _commitment_arg(commitment, identity)
    base = _url(url)
    body: dict[str, Any] = {"commitments": [value]}
    if invite is not None and admission_identity is not None:
        fail("give --invite or --admission-identity, not both")
    if admission_group is not None and admission_identity is None:
        fail("--admission-group goes with --admission-identity")
    if invite is not None:
        body["invite"] = invite
    if admission_identity is not None:
        if admission_group is None:
            fail("--admission-identity needs --admission-group (the admission group it belongs to)")
        body["admission_proof"] = _admission_proof(base, group, int(value), admission_identity, admission_group)
    token: str | None = None
    if as_operator:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            fail(f"--as-operator: set ${TOKEN_ENV} to the registry's operator token")
    data = _submit_registration(base, group, body, token, int(value), wait)
    if wait:
        shown = f"{group} --identity {identity}" if identity is not None else f"{group} {value}"
        data = _wait_until(base, group, int(value), data, until, timeout, as_json, shown)
    if data.get("status") == "refused":
        _fail_with(data, as_json, "refused", f"the ledger refused the registration for good: {data.get('reason', 'refused')}")
    if as_json:
        print_json(data)
    else:
        typer.echo(f"accepted: {_show_member(data)}")


def _submit_registration(base: str, group: int, body: dict[str, Any], token: str | None, value: int, wait: bool) -> dict[str, Any]:
    """``POST`` the registration; the member's status. A ``duplicate`` names how to follow
    it, or with ``--wait`` is followed (a plain ``register`` earlier: nothing new is sent)."""
    from registry.client import RegistryClientError

    with _registry(base) as client:
        try:
            return client.register_body(group, body, token)
        except RegistryClientError as exc:
            if exc.code != "duplicate":
                raise
            if not wait:
                exc.message = f"{exc.message}; `zkid status --group {group} {value}` shows its status"
                raise
            typer.echo("already registered: waiting for that registration", err=True)
            return client.status(group, value)


_UNTIL = {"included": "on chain and indexed", "final": "final"}

#: Why a registration waits: the k-anonymity batch floor (docs/privacy.md, docs/settings.md).
_PENDING_HINT = (
    " (registrations go on chain in batches: once batch_min_size wait, or after batch_max_wait;"
    " 8 and 60 s by default)"
)


def _wait_until(
    base: str, group: int, commitment: int, data: dict[str, Any], until: str, timeout: float, as_json: bool, shown: str
) -> dict[str, Any]:
    """``register --wait``: the SDK's wait (:meth:`RegistryClient.wait_until_anchored`) until
    ``until`` or a refusal, with a progress line on stderr per change; past ``timeout``,
    exit 1 (``still_pending``)."""
    from registry.client import RegistryClientError

    if _reached(data, until):
        return data
    latest = [data]
    shown_state: list[Any] = [None]

    def progress(current: dict[str, Any]) -> None:
        latest[0] = current
        state = (current.get("status"), current.get("confirmations"))
        if state != shown_state[0] and not _reached(current, until):
            shown_state[0] = state
            why = _PENDING_HINT if current.get("status") == "pending" else ""
            typer.echo(f"waiting for {until}: {_show_member(current)}{why}", err=True)

    with _registry(base) as client:
        try:
            return client.wait_until_anchored(group, commitment, timeout, progress, final=until == "final")
        except RegistryClientError as exc:
            if exc.code == "refused":  # the caller says so, with the reason
                return latest[0]
            raise
        except TimeoutError:
            data = latest[0]
            _fail_with(
                data,
                as_json,
                "still_pending",
                f"the registration was accepted and is still {data.get('status')} (not yet {_UNTIL[until]}) "
                f"after {timeout:g} s; it stays queued: follow it with `zkid status --group {shown}`",
            )
            raise  # _fail_with exits


def _reached(data: dict[str, Any], until: str) -> bool:
    """Whether ``register --wait --until`` is done waiting (a refusal ends the wait too)."""
    status = data.get("status")
    if status == "refused":
        return True
    if until == "final":
        return status == "final" and data.get("index") is not None
    # On chain and indexed (the index gives the leaf index a Merkle proof needs).
    return status in ("included", "final") and data.get("index") is not None


def _fail_with(data: dict[str, Any], as_json: bool, reason: str, message: str) -> None:
    """Exit 1 with one error line; under ``--json`` one document: the member's status and the error."""
    typer.echo(f"zkid: error: {message}", err=True)
    if as_json:
        print_json({**data, "error": {"code": reason, "message": message}})
    raise typer.Exit(EXIT_INVALID)


def _admission_proof(base: str, group: int, commitment: int, path: Path, admission_group: int) -> dict[str, Any]:
    """Prove, for ``zkid register --admission-identity``, membership in the admission group
    over ``message = commitment`` and the group's current admission round."""
    from registry.cli.zk_commands import load_identity_file
    from registry.client.api import RegistryClient, RegistryClientError, build_admission_proof, registry_of

    env = "ZKID_ADMISSION_PASSPHRASE" if "ZKID_ADMISSION_PASSPHRASE" in os.environ else "ZKID_PASSPHRASE"
    who = load_identity_file(path, env)
    with _registry(base, EXIT_USAGE) as client:
        info = client.group(group)
    admission = info.get("admission")
    if not isinstance(admission, dict) or admission.get("policy") != "zk":
        fail(f"group {group} does not admit with admission proofs (its policy: {(admission or {}).get('policy', 'none')})")
    if admission.get("admission_group") != admission_group:
        fail(f"group {group}'s admission group is {admission.get('admission_group')}, not {admission_group}")
    # The whole admission group, and the Merkle proof made here: asking the registry for
    # this member's proof would tell it which person is registering (docs/admission.md).
    try:
        with RegistryClient(base) as client:
            tree = client.members(admission_group)
    except RegistryClientError as exc:
        fail(f"cannot read admission group {admission_group}'s members: {exc.code}: {exc.message}")
    index = tree.index_of(who.commitment)
    if index is None:
        fail(f"{path} is not a member of admission group {admission_group} (yet: registered admission members need a batch to be on chain)")
    try:
        proof = build_admission_proof(who, tree.generate_proof(index), group, int(admission["round"]), commitment, registry=registry_of(info))
    except (ValueError, RegistryClientError) as exc:
        fail(f"cannot prove admission: {exc}")
    return proof.to_dict()


def member_status(
    commitment: Annotated[Optional[str], typer.Argument(help="Identity commitment (decimal).", show_default=False)] = None,
    url: Url = None,
    group: Group = 0,
    identity: Annotated[Optional[Path], typer.Option("--identity", help="Look up this identity file's commitment.", show_default=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Registration status of a commitment (exit 1 if the registry does not know it)."""
    value = _commitment_arg(commitment, identity)
    with _registry(_url(url)) as client:
        data = client.status(group, int(value))
    if as_json:
        print_json(data)
    else:
        typer.echo(_show_member(data))


def authorize(
    identity: Annotated[Path, typer.Option("--identity", help="Identity file of the sender (encrypted).")],
    blob: Annotated[Path, typer.Option("--blob", help="The encrypted blob to authorize ('-' reads stdin).")],
    url: Url = None,
    group: Group = 0,
    slot: Annotated[
        Optional[int],
        typer.Option(
            "--slot",
            help="Send slot in this epoch, 0 <= slot < the group's message limit (default: the lowest slot the --slots file has not used).",
            min=0,
            show_default=False,
        ),
    ] = None,
    slots_file: SlotsFile = None,
    as_json: AsJson = False,
) -> None:
    """Prove a send authorization for a blob and ask the registry to check it.

    Fetches the group's parameters and the identity's Merkle proof from the registry,
    proves the relay-epoch statement locally (docs/authorization.md) and posts it to
    /v1/authorize. The slot is recorded in the slots file (shared with `zkid send`).
    Exit 0 authorized, 1 refused."""
    from zk.proof import generate_proof
    from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at
    from registry.cli.zk_commands import load_identity_file
    from registry.client.api import SendSlots, SlotsExhaustedError

    from registry.cli._common import read_blob

    content = read_blob(blob)
    who = load_identity_file(identity)
    base = _url(url)
    with _registry(base, EXIT_USAGE) as client:
        home, epoch_length, limit = client.send_parameters(group)
    if slot is not None and slot >= limit:
        fail(f"slot must be below the group's message limit {limit}")
    with _registry(base) as client:
        try:
            merkle = client.merkle_proof(group, who.commitment)
        except (KeyError, TypeError, ValueError) as exc:
            fail(f"the registry sent an unusable Merkle proof: {exc}")
    digest = digest_blob(content)
    epoch = epoch_at(time.time(), epoch_length)
    slots = _open_slots(SendSlots, slots_file, identity)
    try:
        if slot is None:
            slot = slots.claim(group, epoch, limit)
        else:
            slots.take(group, epoch, slot)
    except SlotsExhaustedError:
        fail(f"all {limit} slots of epoch {epoch} are used; the next epoch starts in {_next_epoch_in(epoch, epoch_length)} s", EXIT_INVALID, reason="slots_exhausted")
    scope = RelayScope.of(home, group, epoch, slot)
    try:
        proof = generate_proof(who, merkle, blob_message(digest), scope.encode())
    except ValueError as exc:
        fail(f"cannot prove: {exc}")
    with _registry(base, EXIT_USAGE) as client:
        data = client.authorize(group, proof, digest)
    answer = {k: v for k, v in data.items() if k != "error"}
    answer["slot"] = slot
    hint = ""
    if data.get("reason") == "nullifier_reused":
        answer["next_slot"], hint = _reused_slot_hint(slots.used(group, epoch), slot, epoch, limit, epoch_length)
    slots.close()
    if as_json:
        print_json(answer)
    elif data["authorized"]:
        typer.echo(f"authorized (epoch {data.get('epoch')}, slot {slot})")
    else:
        typer.echo(f"refused: {data.get('reason')}{hint}")
    raise typer.Exit(EXIT_OK if data["authorized"] else EXIT_INVALID)


def _reused_slot_hint(used: list[int], slot: int, epoch: int, limit: int, epoch_length: int) -> tuple[int | None, str]:
    """After ``nullifier_reused``: the next free slot of the epoch (None: all used) and a hint."""
    free = next((s for s in range(limit) if s not in set(used)), None)
    if free is not None:
        return free, f" (slot {slot} of epoch {epoch} was used already; the next free slot is {free}: --slot {free}, or leave out --slot)"
    return None, f" (every slot of epoch {epoch} is used; the next epoch starts in {_next_epoch_in(epoch, epoch_length)} s)"


def _next_epoch_in(epoch: int, epoch_length: int) -> int:
    return max(0, int((epoch + 1) * epoch_length - time.time()) + 1)


def _open_slots(factory: Any, path: Path | None, identity: Path) -> Any:
    """The sender's slots file (:class:`registry.client.api.SendSlots`): ``path``, or the
    identity file's name with ``.slots`` added, next to it."""
    target = path if path is not None else identity.with_name(identity.name + ".slots")
    try:
        return factory(target)
    except Exception as exc:  # noqa: BLE001 - sqlite3 and OS errors: one line
        fail(f"cannot open the slots file {target}: {type(exc).__name__}: {exc}")

