"""The relay's ``--config`` file: TOML, one key per setting, the format of the registry's
(registry/service/settings.py); command-line flags win over the file, the file over the
defaults. docs/settings.md lists every key (tests/registry/service/test_settings_docs.py checks).

Keys are the flags' names with ``_`` for ``-`` (``send_groups`` and ``trusted_proxies``
are lists for the repeatable ``--send-group`` and ``--trusted-proxy``), plus a few
settings that have no flag (the epoch parameters, which must match the registry's).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from registry.relay.app import RelaySettings

#: Flag (function parameter) name -> config key, where they differ.
PARAM_KEYS = {"send_group": "send_groups", "trusted_proxy": "trusted_proxies"}


class RelayConfig(BaseModel):
    """Every key a relay config file may hold (all optional: unset keys keep the flag's value)."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path | None = Field(None, description="Blob store, nullifiers, keys, connection log (default .relay).")
    host: str | None = Field(None, description="HTTP bind address (default 127.0.0.1).")
    port: int | None = Field(None, ge=0, le=65535, description="HTTP port (default 9646; 0 picks a free one).")
    region: str | None = Field(None, description="Region tag of this relay, shown in its evidence (default local).")
    auth: Literal["local", "registry"] | None = Field(None, description="Authorization path: local (the ledger) or registry.")
    rpc_url: str | None = Field(None, description="Ledger JSON-RPC URL (local authorization).")
    manifest: Path | None = Field(None, description="Deployment manifest (default data_dir/deployment.json).")
    registry_url: str | None = Field(None, description="Registry URL (registry authorization).")
    evidence_url: str | None = Field(None, description="Evidence log URL (POST /v1/evidence); unset: no evidence.")
    chain_id: int | None = Field(None, ge=1, description="Chain id of evidence records (default: the manifest's).")
    keystore: Path | None = Field(None, description="Relay key keystore (default: data_dir/relay.key, generated).")
    keystore_password_env: str | None = Field(None, description="Environment variable holding the keystore password (default ZKID_RELAY_PASSWORD).")
    retention_hours: int | None = Field(None, ge=1, description="Undelivered blobs are deleted after this many hours (default 168).")
    max_body_bytes: int | None = Field(None, ge=1024, description="Largest accepted request (default 1048576).")
    body_timeout: float | None = Field(None, ge=0.1, le=3600, description="Seconds a request body may take to arrive (default 30).")
    rate_limit: int | None = Field(None, ge=1, description="Requests per client IP per minute, for sends and reads each (default 120).")
    send_groups: list[int] | None = Field(None, description="The operator's send groups (local authorization).")
    operator: str | None = Field(None, description="The operator's account, admin of the send groups (default: the manifest's deployer).")
    trusted_proxies: list[str] | None = Field(None, description="Reverse proxies (IP or CIDR) whose X-Forwarded-For names the client.")
    epoch_length: int | None = Field(None, ge=1, description="Relay epoch length in seconds; must match the registry's (default 600).")
    message_limit: int | None = Field(None, ge=1, le=2**32 - 1, description="Send slots per identity per epoch; must match the registry's (default 100).")
    clock_skew: int | None = Field(None, ge=0, description="Seconds of clock skew tolerated at an epoch boundary (default 30).")
    access_log_hours: int | None = Field(None, ge=1, le=72, description="Connection log retention in hours (default 72).")
    evidence_time_resolution: int | None = Field(None, ge=1, le=86_400, description="Evidence event times are rounded down to this many seconds (default 3600; docs/privacy.md).")
    evidence_batch_min: int | None = Field(None, ge=1, le=10_000, description="Evidence records leave in shuffled batches of at least this many (default 8).")
    nullifiers: str | None = Field(None, description="PostgreSQL URL of a nullifier store shared by the relays of a deployment (local authorization); unset: a SQLite file in data_dir.")
    nullifier_authority: str | None = Field(None, description="URL of the groups' home registry, where local authorization claims each nullifier (POST /v1/nullifiers/claim); unset: this relay's store only.")
    evidence_batch_max_wait: float | None = Field(None, ge=0, le=86_400, description="A smaller evidence batch leaves anyway after this many seconds (default 10).")
    trust_list: Path | None = Field(None, description="Trust list of regional registries (TOML, docs/regions.md): a federated relay; the single-registry keys must then be unset.")


def load_relay_config(path: Path) -> dict[str, Any]:
    """The keys set in ``path``, checked; ValueError with one line saying what is wrong."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    try:
        config = RelayConfig(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise ValueError(f"{path}: invalid setting {where}: {first.get('msg')}") from None
    return config.model_dump(exclude_unset=True)


def with_config(
    flags: dict[str, Any], from_file: dict[str, Any], is_default: Callable[[str], bool]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flags (by parameter name) with a config file's keys laid over those left at their
    default (flags win over the file), and the file's settings that have no flag."""
    values = dict(flags)
    extra: dict[str, Any] = {}
    keys = {PARAM_KEYS.get(name, name): name for name in flags}
    for key, value in from_file.items():
        name = keys.get(key)
        if name is None:
            extra[key] = value
        elif is_default(name):
            values[name] = value
    return values, extra


#: Single-registry flags (parameter name -> flag) a trust list replaces.
SINGLE_REGISTRY_FLAGS = {
    "rpc_url": "--rpc-url", "manifest": "--manifest", "registry_url": "--registry-url",
    "evidence_url": "--evidence-url", "chain_id": "--chain-id", "send_group": "--send-group",
    "operator": "--operator", "nullifiers": "--nullifiers", "nullifier_authority": "--nullifier-authority",
}


def check_federated(values: dict[str, Any]) -> None:
    """With ``--trust-list`` every registry's entry names its own ledger, URL, groups and
    evidence log: a single-registry flag beside it is refused (ValueError: one line)."""
    for name, flag in SINGLE_REGISTRY_FLAGS.items():
        if values.get(name):
            raise ValueError(
                f"--trust-list conflicts with {flag}: each trusted registry's entry names its own (drop {flag})"
            )
    if values.get("auth") not in (None, "local"):
        raise ValueError("--trust-list conflicts with --auth: each trusted registry's entry has its own auth")


def check_auth(values: dict[str, Any]) -> None:
    """The authorization path and what it needs (ValueError: one line naming the flag)."""
    if values.get("trust_list") is not None:
        check_federated(values)
        return
    auth = values["auth"]
    if auth not in ("local", "registry"):
        raise ValueError(f"--auth must be local or registry, not {auth!r}")
    if auth == "registry" and not values["registry_url"]:
        raise ValueError("--auth registry needs --registry-url URL (the registry that authorizes sends; registry_url in --config)")
    if auth == "local" and not values["rpc_url"]:
        raise ValueError("--auth local needs --rpc-url URL (the ledger's JSON-RPC endpoint; rpc_url in --config)")


def relay_settings(values: dict[str, Any], extra: dict[str, Any], environ: Mapping[str, str]) -> RelaySettings:
    """The relay's settings from the flags' ``values`` (parameter names of ``zkid relay``) and
    the config keys without a flag; the keystore password from ``environ``. With
    ``--trust-list`` a federated relay (checked by :func:`check_federated`)."""
    from registry.relay.app import RelaySettings

    o = values
    common: dict[str, Any] = {
        "data_dir": Path(o["data_dir"]),
        "region": o["region"],
        "keystore": None if o["keystore"] is None else Path(o["keystore"]),
        "keystore_password": environ.get(o["keystore_password_env"]) if o["keystore"] is not None else None,
        "max_body_bytes": o["max_body_bytes"],
        "body_timeout": o["body_timeout"],
        "retention_seconds": o["retention_hours"] * 3600,
        "rate_limit": o["rate_limit"],
        "rate_window": 60.0,
    }
    if o.get("trust_list") is not None:
        from registry.relay.trust_list import load_trust_list

        return RelaySettings(trust_list=load_trust_list(Path(o["trust_list"])), **common, **extra)
    return RelaySettings(
        auth_mode=o["auth"],
        rpc_url=o["rpc_url"],
        manifest_path=None if o["manifest"] is None else Path(o["manifest"]),
        registry_url=o["registry_url"],
        evidence_url=o["evidence_url"],
        chain_id=o["chain_id"],
        send_groups=None if not o["send_group"] else tuple(o["send_group"]),
        operator=o["operator"],
        nullifiers_url=o.get("nullifiers"),
        nullifier_authority=o.get("nullifier_authority"),
        **common,
        **extra,
    )
