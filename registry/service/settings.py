"""Registry settings: flags override environment (``ZKID_*``) override a TOML config file.

The region tag is informational (served by the API) so that each region can run its
own registry on the ledger it chooses; nothing in the protocol depends on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from registry._utils.integers import MAX_GROUP_ID


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZKID_", extra="forbid", toml_file=None)

    data_dir: Path = Field(Path(".data"), description="Index, outbox, nullifiers, logs, ledger state and manifest.")
    host: str = Field("127.0.0.1", description="HTTP bind address.")
    port: int = Field(8545 + 1000, ge=0, le=65535, description="HTTP port (0 = pick a free one).")
    ledger_port: int = Field(8545, ge=1, le=65535, description="Port of the local Anvil started by `zkid up`.")
    ledger_block_time: int = Field(
        5, ge=0, le=3600,
        description="Seconds between the blocks the local Anvil started by `zkid up` mines when idle, so statuses reach final (0: blocks only for transactions).",
    )
    ledger_chain_id: int | None = Field(
        None, ge=1, lt=2**64,
        description="Chain id of a new local ledger started by `zkid up` (unset: 31337); an existing chain keeps its own.",
    )
    rpc_url: str | None = Field(None, description="EVM JSON-RPC URL; unset = the local ledger of data_dir.")
    database_url: SecretStr | None = Field(
        None,
        description="Where the registry's state lives: unset or sqlite: = SQLite files in data_dir; postgresql://user:pw@host/db = one PostgreSQL database shared by replicas (docs/deployment.md).",
    )
    database_pool_size: int = Field(4, ge=1, le=100, description="PostgreSQL connections per store and replica (pool size).")
    leader_lease: float = Field(
        5.0, ge=1, le=300,
        description="Seconds a replica's leadership lasts without renewal (PostgreSQL); a dead leader is replaced within about twice this.",
    )
    manifest: Path | None = Field(None, description="Deployment manifest; default data_dir/deployment.json.")
    keystore: Path | None = Field(None, description="Encrypted operator keystore (required off Anvil).")
    region: str = Field("local", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", description="Region tag shown in the API.")
    operator_token: SecretStr | None = Field(None, description="Bearer token for operator-only endpoints.")
    confirmations: int = Field(2, ge=0, le=1000, description="Confirmations after which an item is final.")
    poll_interval: float = Field(0.5, gt=0, le=60, description="Seconds between chain polls.")
    log_chunk: int = Field(2000, ge=1, le=100_000, description="Blocks per eth_getLogs request during backfill.")
    batch_size: int = Field(500, ge=1, le=2000, description="Most commitments per addMembers transaction.")
    batch_interval: float = Field(
        2.0, gt=0, le=3600, description="A group's batch of at least batch_min_size goes once it waited this long (s)."
    )
    batch_min_size: int = Field(
        8, ge=1, le=2000, description="Fewest registrations per batch (k-anonymity floor; docs/privacy.md) until batch_max_wait."
    )
    batch_max_wait: float = Field(
        60.0, gt=0, le=86_400, description="A batch smaller than batch_min_size goes anyway after this many seconds."
    )
    epoch_length: int = Field(600, ge=1, description="Relay epoch length in seconds (docs/authorization.md).")
    message_limit: int = Field(100, ge=1, le=2**32 - 1, description="Send slots per identity per epoch.")
    clock_skew: int = Field(
        30, ge=0, description="Seconds of clock skew tolerated at an epoch boundary (less than epoch_length / 2)."
    )
    index_max_age: float = Field(
        30.0, gt=0, le=3600,
        description="Authorization refuses (index_stale) once the last complete index sync began longer ago than this (s).",
    )
    index_max_lag: int = Field(
        10, ge=0, le=100_000, description="...or while the index is more blocks than this behind the head the indexer saw."
    )
    max_fee_per_gas: int | None = Field(
        200 * 10**9, ge=1, description="Most the batcher pays per unit of gas (wei; maxFeePerGas); above it, it pauses."
    )
    spend_per_hour: int | None = Field(
        10**18, ge=1, description="Most wei the batcher commits in any sliding hour; beyond it, it pauses."
    )
    max_backlog: int = Field(
        200_000, ge=1, description="Registrations of one group waiting for the ledger; beyond it, 503 backlog_full."
    )
    admission_group: int | None = Field(
        None, ge=0, le=MAX_GROUP_ID, description="Admission group of new groups created without a policy (policy zk; docs/admission.md)."
    )
    anchor_interval: float = Field(60.0, ge=0, description="At most one evidence anchor transaction per this many seconds.")
    anchor_min_growth: int = Field(1000, ge=1, description="Anchor once this many evidence records are unanchored...")
    anchor_max_delay: float = Field(300.0, ge=0, description="...or once the oldest unanchored record waited this long.")
    relay_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Relay signing addresses allowed to append evidence (env: comma-separated); empty = none.",
    )
    evidence_max_skew: int = Field(300, ge=0, le=86_400, description="Evidence eventTime may be this many seconds ahead.")
    evidence_max_age: int = Field(7 * 24 * 3600, ge=60, description="Evidence older than this (seconds) is refused.")
    evidence_rate: float = Field(20.0, gt=0, description="Evidence records per second per relay (sustained).")
    evidence_burst: int = Field(2000, ge=1, description="Evidence records a relay may send at once (bucket size).")
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest accepted request body, for routes without a larger documented maximum."
    )
    body_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds a request body may take to arrive (then 408 request_timeout)."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies (IP or CIDR) whose X-Forwarded-For is believed (env: comma-separated); empty = none.",
    )
    access_log_hours: int = Field(72, ge=1, le=72, description="Connection log retention (hours, at most 72).")
    # Per-client-IP token buckets (registry/web/rate_limit.py, docs/api.md "Limits per client IP").
    ip_rate_registration: float = Field(1.0, gt=0, le=1e9, description="Commitments per minute one client IP may register (sustained).")
    ip_burst_registration: int = Field(1000, ge=1, description="Commitments one client IP may register at once (bucket size).")
    ip_rate_authorization: float = Field(120.0, gt=0, le=1e9, description="POST /v1/authorize per minute per client IP.")
    ip_burst_authorization: int = Field(300, ge=1, description="POST /v1/authorize at once per client IP.")
    ip_rate_reads: float = Field(600.0, gt=0, le=1e9, description="Other requests (reads, health, metrics) per minute per client IP.")
    ip_burst_reads: int = Field(600, ge=1, description="Other requests at once per client IP.")
    ip_rate_evidence: float = Field(600.0, gt=0, le=1e9, description="Evidence-log requests per minute per client IP.")
    ip_burst_evidence: int = Field(600, ge=1, description="Evidence-log requests at once per client IP.")
    ip_limit_exempt: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Client networks (IP or CIDR) without per-IP limits, e.g. relays authorizing here (env: comma-separated).",
    )

    @field_validator("database_url", mode="after")
    @classmethod
    def _check_database(cls, value: SecretStr | None) -> SecretStr | None:
        from registry.storage.database import database_kind

        if value is not None:
            database_kind(value.get_secret_value())  # DatabaseURLError (a ValueError) names the two forms
        return value

    @property
    def database(self) -> str | None:
        """The database URL (``None``: SQLite files in data_dir)."""
        if self.database_url is None:
            return None
        url = self.database_url.get_secret_value()
        return None if url in ("", "sqlite:", "sqlite://") else url

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("relay_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):  # ZKID_RELAY_KEYS="0xab..,0xcd.."
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("trusted_proxies", "ip_limit_exempt", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):  # ZKID_TRUSTED_PROXIES="10.0.0.1,10.1.0.0/16"
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        from registry.storage.access_log import trusted_proxy

        return sorted({trusted_proxy(v) for v in value})

    @field_validator("ip_limit_exempt", mode="after")
    @classmethod
    def _check_exempt(cls, value: list[str]) -> list[str]:
        import ipaddress

        try:
            return sorted({str(ipaddress.ip_network(v.strip(), strict=False)) for v in value})
        except ValueError:
            raise ValueError("ip_limit_exempt takes IP addresses or networks (CIDR)") from None

    @field_validator("relay_keys", mode="after")
    @classmethod
    def _checksum_keys(cls, value: list[str]) -> list[str]:
        from registry.evidence.admission import relay_address

        return sorted({relay_address(v) for v in value})

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        from zk.relay_scope import check_epoch_parameters

        check_epoch_parameters(self.epoch_length, self.clock_skew)
        if self.index_max_age <= 2 * self.poll_interval:
            raise ValueError("index_max_age must be more than twice poll_interval (the index is synced every poll)")
        return self

    @property
    def manifest_path(self) -> Path:
        return self.manifest if self.manifest is not None else self.data_dir / "deployment.json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML source reads ``model_config["toml_file"]``: nothing unless a file is set.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (flags; None means "not given"), then ``ZKID_*`` env,
    then the TOML ``config_file`` if any, then defaults."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**given)

    class _FromFile(Settings):
        model_config = SettingsConfigDict(env_prefix="ZKID_", extra="forbid", toml_file=config_file)

    return Settings(**_FromFile(**given).model_dump())
