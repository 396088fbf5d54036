"""The trust list: the regional registries a relay (or a client) trusts (docs/regions.md).

A TOML file with one ``[[registry]]`` table per registry::

    [[registry]]
    region = "eu-central"                 # the registry's region tag, unique in the list
    chain_id = 31337                      # its ledger
    contract = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"   # its ZkIdRegistry
    rpc_url = "http://127.0.0.1:8545"     # a node of that ledger (local authorization)
    registry_url = "http://127.0.0.1:8080"  # its HTTP API (claims, authorization, evidence)
    auth = "local"                        # how a relay authorizes this registry's senders
    send_groups = [0]                     # the operator's send groups (local authorization)
    operator = "0xf39F..."                # their admin on the contract (local authorization)
    evidence = true                       # send this registry's evidence records to its log
    evidence_log_key = "..."              # optional: the evidence log's verifier key
    anchor_contract = "0x..."             # optional: its EvidenceAnchor

A group is named globally by ``(chain_id, contract, group_id)``; a proof's ``LZE2`` scope
carries the 96-bit tag of ``(chain_id, contract)`` (:class:`zk.scope_layout.RegistryRef`),
which is how a relay finds the proof's home registry. Two entries with the same tag, or the
same region, are refused: a relay must never be unsure which registry a proof belongs to.
"""

from __future__ import annotations

import re
import tomllib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from registry._utils.integers import MAX_GROUP_ID
from zk.relay_scope import RegistryRef

_REGION = r"^[a-z0-9][a-z0-9-]{0,31}$"
_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_URL = r"^https?://[^\s]+$"


_REQUIRED = ("region", "chain_id", "contract", "registry_url")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    region: str = Field(pattern=_REGION)
    chain_id: int = Field(ge=1, lt=2**256)
    contract: str = Field(pattern=_ADDRESS)
    registry_url: str = Field(pattern=_URL)
    rpc_url: str | None = Field(None, pattern=_URL)
    auth: Literal["local", "registry"] = "local"
    send_groups: list[int] = Field(default_factory=list)
    operator: str | None = Field(None, pattern=_ADDRESS)
    evidence: bool = True
    evidence_log_key: str | None = Field(None, min_length=1, max_length=512)
    anchor_contract: str | None = Field(None, pattern=_ADDRESS)

    @field_validator("send_groups")
    @classmethod
    def _groups(cls, groups: list[int]) -> list[int]:
        for group in groups:
            if not 0 <= group <= MAX_GROUP_ID:
                raise ValueError(f"a group id must be in [0, {MAX_GROUP_ID}]")
        return groups


@dataclass(frozen=True)
class TrustedRegistry:
    """One entry of the trust list (field meanings: the module docstring)."""

    region: str
    ref: RegistryRef
    registry_url: str
    rpc_url: str | None = None
    auth: Literal["local", "registry"] = "local"
    send_groups: tuple[int, ...] = ()
    operator: str | None = None
    evidence: bool = True
    evidence_log_key: str | None = None
    anchor_contract: str | None = None

    @property
    def tag(self) -> int:
        return self.ref.tag


class TrustList:
    """The entries of a trust list, looked up by registry tag or region."""

    def __init__(self, entries: list[TrustedRegistry]) -> None:
        if not entries:
            raise ValueError("the trust list names no registry")
        by_tag: dict[int, TrustedRegistry] = {}
        by_region: dict[str, TrustedRegistry] = {}
        for entry in entries:
            if entry.tag in by_tag:
                raise ValueError(f"registries {by_tag[entry.tag].region} and {entry.region} have the same chain id and contract")
            if entry.region in by_region:
                raise ValueError(f"region {entry.region} is listed twice")
            if entry.auth == "local" and entry.rpc_url is None:
                raise ValueError(f"region {entry.region}: auth = \"local\" needs rpc_url")
            by_tag[entry.tag] = by_region[entry.region] = entry
        self.entries = tuple(entries)
        self._by_tag = by_tag
        self._by_region = by_region

    def __iter__(self) -> Iterator[TrustedRegistry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def by_tag(self, tag: int) -> TrustedRegistry | None:
        return self._by_tag.get(tag)

    def by_region(self, region: str) -> TrustedRegistry | None:
        return self._by_region.get(region)

    def by_ref(self, ref: RegistryRef) -> TrustedRegistry | None:
        entry = self._by_tag.get(ref.tag)
        return entry if entry is not None and entry.ref == ref else None

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(entry.region for entry in self.entries)


def parse_trust_list(text: str, source: str = "trust list") -> TrustList:
    """The trust list in TOML ``text``; ValueError with one line saying what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ValueError(f"{source} is not a trust list: its values are nested too deeply") from None
    unknown = set(raw) - {"registry"}
    if unknown:
        raise ValueError(f"{source}: unknown key {sorted(unknown)[0]!r} (only [[registry]] tables)")
    tables = raw.get("registry")
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{source} names no registry: add a [[registry]] table per registry")
    entries: list[TrustedRegistry] = []
    for number, table in enumerate(tables, 1):
        if not isinstance(table, dict):
            raise ValueError(f"{source}: registry {number} is not a table")
        try:
            entry = _Entry(**table)
        except ValidationError as exc:
            raise ValueError(f"{source}: {_entry_error(number, table, exc)}") from None
        entries.append(
            TrustedRegistry(
                region=entry.region,
                ref=RegistryRef(entry.chain_id, entry.contract),
                registry_url=entry.registry_url.rstrip("/"),
                rpc_url=entry.rpc_url,
                auth=entry.auth,
                send_groups=tuple(entry.send_groups),
                operator=entry.operator,
                evidence=entry.evidence,
                evidence_log_key=entry.evidence_log_key,
                anchor_contract=entry.anchor_contract,
            )
        )
    try:
        return TrustList(entries)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _entry_error(number: int, table: dict[str, object], exc: ValidationError) -> str:
    """One line for the first problem of entry ``number``, naming its region when it has one."""
    region = table.get("region")
    named = isinstance(region, str) and re.fullmatch(_REGION, region) is not None
    label = f"registry {number}" + (f" (region {region})" if named else "")
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "entry"
    if first.get("type") == "missing":
        return f"{label}: {where} is missing (each [[registry]] needs {', '.join(_REQUIRED)})"
    if first.get("type") == "extra_forbidden":
        return f"{label}: unknown key {where} (keys: {', '.join(_Entry.model_fields)})"
    return f"{label}: invalid {where}: {first.get('msg')}"


def load_trust_list(path: Path) -> TrustList:
    """The trust list in the file at ``path`` (ValueError: one line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    return parse_trust_list(text, str(path))


def render_trust_list(entries: list[TrustedRegistry]) -> str:
    """TOML for ``entries`` that :func:`parse_trust_list` reads back (the demo writes one)."""
    lines: list[str] = []
    for entry in entries:
        lines += ["[[registry]]", f'region = "{entry.region}"', f"chain_id = {entry.ref.chain_id}"]
        lines += [f'contract = "{entry.ref.contract}"', f'registry_url = "{entry.registry_url}"']
        if entry.rpc_url is not None:
            lines.append(f'rpc_url = "{entry.rpc_url}"')
        lines.append(f'auth = "{entry.auth}"')
        lines.append(f"send_groups = [{', '.join(str(g) for g in entry.send_groups)}]")
        lines.append(f"evidence = {'true' if entry.evidence else 'false'}")
        for key in ("operator", "evidence_log_key", "anchor_contract"):
            value = getattr(entry, key)
            if value is not None:
                lines.append(f"{key} = {_toml_string(value)}")
        lines.append("")
    return "\n".join(lines)


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment: a trust list's ``registry_url`` may
    carry a proxy's credentials (``https://user:secret@host``), which ``GET
    /v1/registries`` must not publish."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a port: the URL cannot be used anyway
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
