"""The reference relay's HTTP API (FastAPI); the contract is written in docs/relay.md.

- ``POST /v1/blobs`` ``{"mailbox", "pickup_hash", "blob", "group_id", "proof"}``: the
  relay hashes the blob itself, checks the send authorization (docs/authorization.md:
  locally against the ledger, or through a registry's ``POST /v1/authorize``), stores the
  blob durably and answers 201 ``{"id", "digest", "evidence_id"}``.
- ``GET /v1/mailboxes/{tag}`` with ``X-Pickup-Capability: <hex secret>``: the blobs of
  the mailbox when ``SHA-256(secret)`` is its pickup hash.
- ``POST /v1/blobs/{id}/ack`` with the same header: delivered, the blob is deleted.
- ``GET /v1/health`` (``ok``, or ``degraded`` with ``reasons``) and ``GET /metrics``.

Every error is ``{"error": {"code", "message"}}`` with a 4xx (503 only when the
authorization service itself cannot be asked: ``authorization_unavailable`` when nothing
was claimed, ``authorization_unknown`` when the registry may have claimed the slot). The relay learns no identity: a send
authorization is anonymous, and only ``(hour, client IP)`` is logged (registry/storage/access_log.py,
docs/privacy.md).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
import anyio
import anyio.to_thread
import requests
from web3 import Web3
from web3.exceptions import Web3Exception

from registry._utils.logs import exc_type
from registry.storage.access_log import AccessLog, AccessLogMiddleware
from registry.service.authorization import MAX_GROUP_ID, Decision, NullifierStore, Reason, SqliteNullifierStore, parse_group_id
from registry.errors import RegistryError, refusal_status
from registry.web.errors import install_error_handlers, json_input_error, model_error_text
from registry.web.models import SemaphoreProofModel
from registry.web.middleware import BodyLimitMiddleware, ErrorGuardMiddleware
from registry.ledger.deploy import Manifest, read_manifest
from registry.ledger.errors import DeploymentError, LedgerError
from registry.ledger.registry_contract import RegistryContract
from registry.web.rate_limit import IpRateLimiter, RateLimitMiddleware, RouteLimit
from registry.client._http import request
from registry.relay.deadline import deadline, deadline_client, ledger_web3
from registry.relay.evidence import EvidenceEmitter, load_relay_key
from registry.relay.federation import (
    FederatedAuthorizer,
    RegionRoute,
    RouteParameters,
    UnknownRegistry,
    build_routes,
    evidence_queue_file,
    nullifiers_file,
    scope_home,
    tag_hex,
)
from registry.relay.trust_list import TrustList, public_url
from registry.relay.store import DIR_NAME, FILE_NAME, BlobStore, MailboxConflict, StoredBlob, WrongCapability
from registry.storage.database import database_kind, open_store_database
from registry.storage.dir_lock import DataDirLock
from registry.storage.sqlite import MANIFEST_FILE, RESTORE_FIX, StoreError, StoreManifest
from registry.relay.authorization import LocalAuthorizer, RegistryAuthClient, RemoteAuthorizationError
from registry.relay.nullifier_authority import (
    AuthorityNullifierStore,
    NullifierAuthorityClient,
    NullifierAuthorityUnavailable,
    NullifierClaimRefused,
    RETRY_AFTER,
)
from zk import strict_json
from zk.evidence.record import EventType, ReasonCode
from zk.relay_scope import RegistryRef, acceptable_epochs, check_epoch_parameters, digest_blob

log = logging.getLogger(__name__)

_HEX32 = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_HEX_SECRET = re.compile(r"(0x)?(?:[0-9a-fA-F]{2}){16,64}")
_BLOB_ID = re.compile(r"[0-9a-f]{32}")
_BODY_KEYS = {"mailbox", "pickup_hash", "blob", "group_id", "proof"}
NULLIFIERS_FILE = "nullifiers.sqlite"
EVIDENCE_QUEUE_FILE = "evidence_queue.sqlite"
#: The relay's durable stores (file -> tables that must be there), checked at start
#: against the data directory's ``stores.json`` (registry/storage/sqlite.py, docs/operations.md).
STORE_TABLES: dict[str, tuple[str, ...]] = {
    NULLIFIERS_FILE: ("nullifiers",),
    EVIDENCE_QUEUE_FILE: ("evidence_queue",),
}
CAPABILITY_HEADER = "X-Pickup-Capability"
#: Seconds a ledger head read serves root lookups (registry/relay/authorization.py
#: LedgerRoots): a superseded root may outlast its window by at most this much.
LEDGER_HEAD_INTERVAL = 0.25
#: Body limit of the routes other than POST /v1/blobs (they take no body).
SMALL_BODY = 4096
#: Federated relays: worker threads the sends of one trusted region may hold at once, and
#: sends that may wait for one (beyond that: 503 ``authorization_unavailable``). A region
#: whose ledger or registry hangs (a read timeout only bounds the time between bytes) so
#: ties up its own threads only: the shared pool (40) keeps serving the other regions,
#: pickups, acks and health (docs/relay.md "Federated relays").
ROUTE_THREADS = 16
ROUTE_QUEUE = 256
#: Seconds a send may spend on its upstreams (ledger reads, the registry's authorization
#: or nullifier claim) in all, however they trickle (registry/relay/deadline.py); then it
#: is refused as unavailable (503, ``Retry-After``), or ``authorization_unknown`` when a
#: registry may have claimed its slot.
UPSTREAM_DEADLINE = 10.0
#: Single-registry mode: the limiter key of the sends (as a region's in federated mode).
_SINGLE = -1

#: Evidence reason codes of the refusals (zk/evidence/record.py ReasonCode).
_EVIDENCE_REASON = {
    Reason.MALFORMED: ReasonCode.INVALID_PROOF,
    Reason.INVALID_PROOF: ReasonCode.INVALID_PROOF,
    Reason.BAD_SCOPE: ReasonCode.SCOPE_MISMATCH,
    Reason.SCOPE_VERSION_UNSUPPORTED: ReasonCode.SCOPE_MISMATCH,
    Reason.WRONG_REGISTRY: ReasonCode.SCOPE_MISMATCH,
    Reason.WRONG_GROUP: ReasonCode.SCOPE_MISMATCH,
    Reason.UNKNOWN_GROUP: ReasonCode.SCOPE_MISMATCH,
    Reason.GROUP_NOT_SERVED: ReasonCode.SCOPE_MISMATCH,
    Reason.WRONG_EPOCH: ReasonCode.SCOPE_MISMATCH,
    Reason.SLOT_OUT_OF_RANGE: ReasonCode.RATE_LIMITED,
    Reason.MESSAGE_MISMATCH: ReasonCode.MESSAGE_MISMATCH,
    Reason.UNKNOWN_ROOT: ReasonCode.UNKNOWN_ROOT,
    Reason.EXPIRED_ROOT: ReasonCode.EXPIRED,
    Reason.NULLIFIER_REUSED: ReasonCode.NULLIFIER_REUSED,
}


class SendAuthorizer(Protocol):
    def authorize(self, proof: Any, group_id: int, blob_digest: bytes) -> Decision: ...


@dataclass
class RelaySettings:
    """Relay configuration (``zkid relay`` flags)."""

    data_dir: Path
    region: str = "local"
    auth_mode: Literal["local", "registry"] = "local"
    rpc_url: str | None = None  # local mode: the ledger node
    manifest_path: Path | None = None  # local mode: default data_dir/deployment.json
    registry_url: str | None = None  # registry mode: where to authorize
    evidence_url: str | None = None  # evidence log; None: no evidence is emitted
    chain_id: int | None = None  # of evidence records; default: the manifest's or the node's
    keystore: Path | None = None
    keystore_password: str | None = field(default=None, repr=False)
    epoch_length: int = 600
    message_limit: int = 100
    clock_skew: int = 30
    # Local mode: the operator's send groups (docs/admission.md). None: no group is served
    # (fail closed: the relay cannot tell send groups from admission groups on the ledger),
    # unless all_operator_groups (library and tests only, for deployments without admission
    # groups: every group the operator administers); operator None: the manifest's deployer.
    send_groups: tuple[int, ...] | None = None
    all_operator_groups: bool = False
    operator: str | None = None
    max_body_bytes: int = 1024 * 1024
    retention_seconds: int = 7 * 24 * 3600
    rate_limit: int = 120  # requests per IP per rate_window
    rate_window: float = 60.0
    access_log_hours: int = 72
    purge_interval: float = 300.0
    evidence_interval: float = 1.0
    evidence_rejection_burst: int = 20  # rejection records signed at once (registry/relay/evidence.py)
    evidence_rejection_per_minute: float = 10.0  # ...and afterwards; the rest are only counted
    min_free_bytes: int = 64 * 1024 * 1024  # disk space a send must leave free (else 507, checked before authorizing)
    body_timeout: float = 30.0  # seconds a request body may take to arrive (else 408 request_timeout)
    probe_interval: float = 5.0  # seconds between checks of the ledger / registry (health)
    evidence_backlog: int = 1000  # queued evidence records above which health says evidence_backlog
    # Privacy (docs/privacy.md): evidence eventTime rounded down to this many seconds, and
    # records posted in shuffled batches of at least evidence_batch_min, or after
    # evidence_batch_max_wait seconds whatever their number.
    evidence_time_resolution: int = 3600
    evidence_batch_min: int = 8
    evidence_batch_max_wait: float = 10.0
    # Local mode: a nullifier store shared by the relays of a deployment (a PostgreSQL URL:
    # a proof spent at one relay is refused at all; docs/deployment.md); None: a SQLite
    # file in data_dir, this relay's alone.
    nullifiers_url: str | None = field(default=None, repr=False)
    # Local mode: the groups' home registry, where each nullifier is claimed after the
    # proof verifies (registry/relay/nullifier_authority.py); None: this relay's store only.
    nullifier_authority: str | None = None
    # Federated mode (registry/relay/federation.py): the trusted registries; each proof
    # goes to the one its scope names. The single-registry settings must then be unset.
    trust_list: TrustList | None = None

    def __post_init__(self) -> None:
        if self.trust_list is not None:
            self._check_federated()
        if self.nullifier_authority is not None and self.auth_mode != "local":
            raise ValueError("nullifier_authority is for local authorization (in registry mode the registry claims)")
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if self.nullifiers_url is not None and database_kind(self.nullifiers_url) != "postgresql":
            raise ValueError("nullifiers takes a postgresql:// URL (unset: a SQLite file in the data directory)")
        if self.auth_mode not in ("local", "registry"):
            raise ValueError("auth_mode must be 'local' or 'registry'")
        if self.auth_mode == "registry" and not self.registry_url:
            raise ValueError("auth_mode 'registry' needs registry_url")
        if self.auth_mode == "local" and not self.rpc_url and self.trust_list is None:
            raise ValueError("auth_mode 'local' needs rpc_url")
        if self.retention_seconds < 1 or self.rate_limit < 1 or self.rate_window <= 0:
            raise ValueError("retention_seconds, rate_limit and rate_window must be positive")
        check_epoch_parameters(self.epoch_length, self.clock_skew)  # skew < epoch_length / 2
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", self.region):
            raise ValueError("region must match [a-z0-9][a-z0-9-]{0,31}")

    def _check_federated(self) -> None:
        """With a trust list each registry's entry says how to reach it: the
        single-registry settings would be ambiguous (ValueError naming the first set)."""
        single = {
            "rpc_url": self.rpc_url, "manifest_path": self.manifest_path, "registry_url": self.registry_url,
            "evidence_url": self.evidence_url, "chain_id": self.chain_id, "send_groups": self.send_groups,
            "operator": self.operator, "nullifiers_url": self.nullifiers_url,
            "nullifier_authority": self.nullifier_authority,
        }
        for name, value in single.items():
            if value is not None:
                raise ValueError(f"trust_list conflicts with {name}: each trusted registry's entry names its own")
        if self.auth_mode != "local" or self.all_operator_groups:
            raise ValueError("trust_list conflicts with auth_mode/all_operator_groups: each entry has its own auth")


def relay_route_class(scope: Any) -> str:
    """The relay's route classes: ``send`` (POST /v1/blobs: an authorization each) and
    ``reads`` (pickups, acks, health), each with its own bucket (docs/relay.md)."""
    return "send" if scope.get("method") == "POST" and scope.get("path") == "/v1/blobs" else "reads"


def relay_limiter(settings: RelaySettings) -> IpRateLimiter:
    """``rate_limit`` requests per ``rate_window`` seconds per client IP and class, at most
    ``rate_limit`` at once; entries live at most as long as the connection log's rows."""
    limit = RouteLimit(settings.rate_limit * 60.0 / settings.rate_window, settings.rate_limit)
    return IpRateLimiter({"send": limit, "reads": limit}, max_idle=settings.access_log_hours * 3600)


def _hex32(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise RegistryError("malformed", f"{name} must be 32 bytes in hex", 422)
    return bytes.fromhex(value.removeprefix("0x"))


def _capability(request: Request) -> bytes:
    value = request.headers.get(CAPABILITY_HEADER)
    if value is None or not _HEX_SECRET.fullmatch(value):
        raise RegistryError("forbidden", f"a valid {CAPABILITY_HEADER} header (hex, 16 to 64 bytes) is required", 403)
    return bytes.fromhex(value.removeprefix("0x"))


def _manifest(path: Path) -> Manifest | None:
    if not path.exists():
        return None
    try:
        return read_manifest(path)  # strictly (zk/strict_json.py)
    except DeploymentError as exc:
        raise ValueError(str(exc)) from None


def _store_tables(name: str) -> tuple[str, ...]:
    """The tables of a relay store file (per-registry files in federated mode)."""
    if name in STORE_TABLES:
        return STORE_TABLES[name]
    return STORE_TABLES[NULLIFIERS_FILE if name.startswith("nullifiers-") else EVIDENCE_QUEUE_FILE]


def _federated_stores(trust: TrustList, own_authorizer: bool) -> list[str]:
    """The per-registry stores a federated relay opens: a nullifier file per locally
    checked registry (unless an authorizer was given), an evidence queue per log."""
    names = [nullifiers_file(e.tag) for e in trust if e.auth == "local" and own_authorizer]
    return names + [evidence_queue_file(e.tag) for e in trust if e.evidence]


def _checked_stores(data: Path, opened: list[str]) -> StoreManifest:
    """The data directory's manifest, after checking the stores this configuration opens:
    each must be intact if it should exist (an empty nullifier store would accept spent
    proofs again)."""
    stores = StoreManifest(data)
    stores.check({name: _store_tables(name) for name in opened})
    if NULLIFIERS_FILE in opened and not stores.exists and not (data / NULLIFIERS_FILE).exists():
        # No manifest to say whether a nullifier store existed: a relay that has run
        # before (blobs, evidence queue) may have lost both; an empty store would
        # accept its spent proofs again.
        traces = [n for n in (DIR_NAME, FILE_NAME, EVIDENCE_QUEUE_FILE) if (data / n).exists()]
        if traces:
            raise StoreError(
                data / NULLIFIERS_FILE,
                f"is missing, and so is {MANIFEST_FILE}, though this relay has run before ({', '.join(traces)} exist)",
                f"restore it from a backup, with {MANIFEST_FILE}; if this relay never authorized locally, "
                f"write {MANIFEST_FILE} listing the stores it has (docs/operations.md)",
            )
    # The blob store is a directory of files (registry/relay/store.py: deleted blobs
    # must leave no bytes behind); relay.sqlite of earlier versions is moved into it.
    if DIR_NAME in stores.names and not (data / DIR_NAME).is_dir():
        raise StoreError(data / DIR_NAME, "is missing", RESTORE_FIX)
    return stores


class Relay:
    """The relay's parts, shared by the routes and the background tasks."""

    def __init__(
        self, settings: RelaySettings, authorizer: SendAuthorizer | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock
        data = settings.data_dir
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir_lock = DataDirLock(data, "relay")
        try:
            self._open_parts(settings, authorizer)
        except BaseException:
            self._dir_lock.release()
            raise

    def _open_parts(self, settings: RelaySettings, authorizer: SendAuthorizer | None) -> None:
        data = settings.data_dir
        # The stores this configuration opens; each must be intact if it should exist
        # (an empty nullifier store would accept spent proofs again).
        opened: list[str] = []
        if settings.trust_list is not None:
            opened = _federated_stores(settings.trust_list, authorizer is None)
        elif authorizer is None and settings.auth_mode == "local" and settings.nullifiers_url is None:
            opened.append(NULLIFIERS_FILE)
        if settings.evidence_url is not None:
            opened.append(EVIDENCE_QUEUE_FILE)
        stores = _checked_stores(data, opened)
        # Reception times to the hour (docs/privacy.md), or to the retention if shorter.
        self.store = BlobStore(
            data / DIR_NAME, legacy=data / FILE_NAME, time_resolution=min(3600, settings.retention_seconds)
        )
        self.access_log = AccessLog(data / "access.log.sqlite", settings.access_log_hours)
        self._groups_seen: set[int] = set()
        self._route_groups: set[tuple[int, int]] = set()  # federated: (registry tag, group)
        self._nullifiers: SqliteNullifierStore | None = None
        # Health and metrics (counts only, no per-user label): sends by outcome code,
        # pickups, acks; whether the ledger (local) / registry (registry mode) answered last.
        self._counts_lock = threading.Lock()
        self.sends: Counter[str] = Counter()
        self.pickups = 0
        self.acks = 0
        self.upstream_ok: bool | None = None
        self.evidence_log_ok: bool | None = None  # the evidence log answered the last probe
        self._probe: Callable[[], None] | None = None
        self._probing: dict[str, threading.Thread] = {}  # the last probe thread of each upstream
        #: Federated mode: the trusted registries by tag, and the evidence queue of each
        #: registry whose log takes this relay's records (registry/relay/federation.py).
        self.routes: dict[int, RegionRoute] = {}
        self.home_evidence: dict[int, EvidenceEmitter] = {}
        self._route_limiters: dict[int, anyio.CapacityLimiter] = {}  # made in the event loop
        self.evidence: EvidenceEmitter | None = None
        if settings.trust_list is not None:
            self.authorizer = self._federated(settings.trust_list, authorizer)
        else:
            self.authorizer = self._single_registry(authorizer)
        stores.record([*opened, DIR_NAME])

    def _federated(self, trust: TrustList, authorizer: SendAuthorizer | None) -> SendAuthorizer:
        """The routes of a trust list (unless ``authorizer`` is given) and an evidence
        emitter per registry that takes evidence (records carry its chain id)."""
        s = self.settings
        key = load_relay_key(s.data_dir, s.keystore, s.keystore_password)
        if authorizer is None:
            params = RouteParameters(
                s.data_dir, key, s.epoch_length, s.message_limit, s.clock_skew, self.clock, LEDGER_HEAD_INTERVAL
            )
            self.routes = build_routes(trust, params, _Probes())
            authorizer = FederatedAuthorizer(self.routes)
        for entry in trust:
            if entry.evidence:
                self.home_evidence[entry.tag] = self._emitter(
                    s.data_dir / evidence_queue_file(entry.tag), key, entry.ref.chain_id, entry.registry_url
                )
        return authorizer

    def _emitter(self, queue: Path, key: bytes, chain_id: int, url: str) -> EvidenceEmitter:
        s = self.settings
        return EvidenceEmitter(
            queue, key, chain_id, s.region, url, clock=self.clock,
            rejection_burst=s.evidence_rejection_burst,
            rejection_per_minute=s.evidence_rejection_per_minute,
            time_resolution=s.evidence_time_resolution,
            batch_min=s.evidence_batch_min,
            batch_max_wait=s.evidence_batch_max_wait,
        )

    def _single_registry(self, authorizer: SendAuthorizer | None) -> SendAuthorizer:
        """The authorizer and evidence emitter of one registry (the settings' own)."""
        settings, data = self.settings, self.settings.data_dir
        chain_id = settings.chain_id
        manifest = None
        if settings.auth_mode == "local" or chain_id is None:
            manifest = _manifest(settings.manifest_path or data / "deployment.json")
        if authorizer is None:
            authorizer = self._default_authorizer(manifest)
        if chain_id is None and manifest is not None:
            chain_id = manifest.chain_id
        if chain_id is None and settings.rpc_url:
            chain_id = int(Web3(Web3.HTTPProvider(settings.rpc_url)).eth.chain_id)
        if settings.evidence_url is not None:
            if chain_id is None:
                raise ValueError("evidence needs chain_id (setting, manifest or rpc_url)")
            key = load_relay_key(data, settings.keystore, settings.keystore_password)
            self.evidence = self._emitter(data / EVIDENCE_QUEUE_FILE, key, chain_id, settings.evidence_url)
        return authorizer

    def _default_authorizer(self, manifest: Manifest | None) -> SendAuthorizer:
        """The authorizer of ``auth_mode``: the registry's ``POST /v1/authorize``, or local
        checks against the ledger with this relay's own nullifier store."""
        if self.settings.auth_mode == "registry":
            assert self.settings.registry_url is not None
            self._probe = _registry_probe(self.settings.registry_url)
            return RegistryAuthClient(self.settings.registry_url)  # its client obeys deadline()
        else:
            if manifest is None:
                raise ValueError(f"local authorization needs a deployment manifest in {self.settings.data_dir}")
            assert self.settings.rpc_url is not None
            w3 = ledger_web3(self.settings.rpc_url, 10.0)  # calls obey deadline()
            contract = RegistryContract(w3, manifest.address("ZkIdRegistry"))
            # One store (claims by the authorizer, purges below), closed by close().
            self._nullifiers = SqliteNullifierStore(
                open_store_database(self.settings.nullifiers_url, self.settings.data_dir, NULLIFIERS_FILE, durable=True)
            )
            local = LocalAuthorizer(
                contract,
                self._claims_store(manifest),
                epoch_length=self.settings.epoch_length,
                message_limit=self.settings.message_limit,
                clock_skew=self.settings.clock_skew,
                clock=self.clock,
                # Only the operator's send groups (docs/admission.md): a group someone
                # else created on the contract is refused with group_not_served.
                operator=self.settings.operator or manifest.deployer,
                # Scopes must name this deployment (docs/authorization.md, LZE2).
                deployment=RegistryRef(manifest.chain_id, manifest.address("ZkIdRegistry")),
                # One eth_blockNumber per LEDGER_HEAD_INTERVAL, not three per send.
                head_interval=LEDGER_HEAD_INTERVAL,
                send_groups=self.settings.send_groups
                if self.settings.send_groups is not None
                else (None if self.settings.all_operator_groups else ()),
            )
            if self.settings.send_groups is None and not self.settings.all_operator_groups:
                log.warning("local authorization without send groups: every send is refused (group_not_served)")
            self._probe = _ledger_probe(self.settings.rpc_url)
            return local

    def _claims_store(self, manifest: Manifest) -> NullifierStore:
        """This relay's store, claiming at the home registry too with ``nullifier_authority``."""
        assert self._nullifiers is not None
        if self.settings.nullifier_authority is None:
            return self._nullifiers
        key = load_relay_key(self.settings.data_dir, self.settings.keystore, self.settings.keystore_password)
        deployment = RegistryRef(manifest.chain_id, manifest.address("ZkIdRegistry"))
        client = NullifierAuthorityClient(self.settings.nullifier_authority, key, deployment, clock=self.clock)
        return AuthorityNullifierStore(self._nullifiers, client)

    # -------------------------------------------------------------- evidence (best effort)

    def emit(
        self, event: EventType, digest: bytes, reason: ReasonCode | None = None, links: tuple[bytes, ...] = (),
        home: int | None = None,
    ) -> bytes | None:
        """Queue a record for the evidence log: the relay's one log, or in federated mode
        the log of the blob's home registry (none for a blob of unknown home: one stored
        before the relay was federated, or a refusal whose scope names no registry)."""
        if self.settings.trust_list is None:
            emitter = self.evidence
        else:
            emitter = None if home is None else self.home_evidence.get(home)
        return None if emitter is None else emitter.emit(event, digest, reason, links)

    def emitters(self) -> list[EvidenceEmitter]:
        """Every evidence emitter of this relay (one per log)."""
        return ([] if self.evidence is None else [self.evidence]) + list(self.home_evidence.values())

    def _home(self, proof: Any) -> int | None:
        """Federated mode: the trusted registry the proof's scope names (None for a scope
        that cannot be read: the authorizer refuses it); 403 ``unknown_registry`` for a
        registry that is not on the trust list. Single-registry mode: None."""
        trust = self.settings.trust_list
        if trust is None:
            return None
        home = scope_home(proof)
        if isinstance(home, Reason):
            return None
        if trust.by_tag(home) is None:
            raise RegistryError(
                "unknown_registry", f"the proof's scope names registry {tag_hex(home)}, which this relay does not trust", 403
            )
        return home

    def _home_if_trusted(self, proof: Any) -> int | None:
        """:meth:`_home`, None instead of the refusal of an untrusted registry."""
        try:
            return self._home(proof)
        except RegistryError:
            return None

    def send_limiter(self, body: dict[str, Any]) -> anyio.CapacityLimiter | None:
        """Called in the event loop: the worker threads of the region the send's scope
        names (:data:`ROUTE_THREADS`; single-registry mode: of all sends); None (the shared
        pool) for a send that names no route (refused without asking anyone). 503 when
        :data:`ROUTE_QUEUE` sends already wait. Pickups, acks and health so always find a
        thread, however slowly the upstreams answer."""
        proof = body.get("proof")
        if not isinstance(proof, dict):
            return None
        if self.settings.trust_list is None:
            home = _SINGLE  # one registry: its sends never hold every worker thread either
        else:
            found = scope_home(proof)
            if isinstance(found, Reason) or found not in self.routes:
                return None
            home = found
        limiter = self._route_limiters.get(home)
        if limiter is None:
            limiter = self._route_limiters[home] = anyio.CapacityLimiter(ROUTE_THREADS)
        if limiter.statistics().tasks_waiting >= ROUTE_QUEUE:
            raise RegistryError(
                "authorization_unavailable", "too many sends of this registry are waiting; the send authorization was not used",
                503, {"Retry-After": str(RETRY_AFTER)},
            )
        return limiter

    def _set_upstream(self, home: int | None, ok: bool) -> None:
        route = None if home is None else self.routes.get(home)
        if route is not None:
            route.upstream_ok = ok
        else:
            self.upstream_ok = ok

    # -------------------------------------------------------------- blob path

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        if set(body) != _BODY_KEYS:
            raise RegistryError("malformed", f"the body has exactly the keys {', '.join(sorted(_BODY_KEYS))}", 422)
        mailbox = _hex32(body["mailbox"], "mailbox")
        pickup_hash = _hex32(body["pickup_hash"], "pickup_hash")
        group_id = parse_group_id(body["group_id"])  # the registry's rule (registry/service/authorization.py)
        if group_id is None:
            raise RegistryError("malformed", f"group_id must be an integer in [0, {MAX_GROUP_ID}]", 422)
        raw = body["blob"]
        if not isinstance(raw, str) or not raw:
            raise RegistryError("malformed", "blob must be non-empty base64", 422)
        try:
            blob = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise RegistryError("malformed", "blob must be standard base64", 422) from None
        proof = body["proof"]
        if not isinstance(proof, dict):
            raise RegistryError("malformed", "proof must be a SemaphoreProof JSON object", 422)
        digest = digest_blob(blob)  # the relay's own digest: a proof cannot be moved to another blob
        try:  # the registry's schema for a proof: what breaks it is 422 at both servers
            SemaphoreProofModel.model_validate(proof)
        except ValidationError as exc:
            # Still a submission judged and rejected (an invalid proof): its evidence record
            # is kept as for any refusal (rejection records are rate-limited).
            self.emit(EventType.SUBMISSION_REJECTION, digest, ReasonCode.INVALID_PROOF, home=self._home_if_trusted(proof))
            raise RegistryError("malformed", model_error_text(exc, "proof"), 422) from None
        # Everything that could refuse the send after authorization is checked before it:
        # authorizing spends the sender's slot (at the registry, in registry mode).
        try:
            with self.store.reserve(mailbox, pickup_hash):  # the tag stays ours until stored
                if self.store.free_bytes() < len(blob) + self.settings.min_free_bytes:
                    raise RegistryError("insufficient_storage", "the relay has no room for this blob now", 507)
                return self._authorize_and_store(proof, group_id, mailbox, pickup_hash, blob, digest)
        except MailboxConflict as exc:
            raise RegistryError("mailbox_conflict", str(exc), 409) from None

    def _authorize_and_store(
        self, proof: Any, group_id: int, mailbox: bytes, pickup_hash: bytes, blob: bytes, digest: bytes
    ) -> dict[str, Any]:
        home = self._home(proof)
        decision = self._authorize(proof, group_id, digest, home)
        if not decision.authorized:
            reason = _EVIDENCE_REASON.get(decision.reason, ReasonCode.INVALID_PROOF)
            self.emit(EventType.SUBMISSION_REJECTION, digest, reason, home=home)
            raise RegistryError(
                decision.reason.value, "send authorization refused", refusal_status(decision.reason.value), fields=decision.to_dict()
            )
        if home is None:
            self._groups_seen.add(group_id)
        else:
            self._route_groups.add((home, group_id))
        try:
            blob_id = self.store.put(mailbox, pickup_hash, blob, digest, self.clock(), home=home)
        except OSError as exc:
            # Claimed but not stored: give the slot back where the claim is ours (local
            # mode). A registry's claim stays: it has no release (docs/relay.md).
            log.error("blob store write failed: %s", exc_type(exc))
            released = self._release(group_id, decision, home)
            used = "was not used" if released else "is used up: send with a new one"
            raise RegistryError("store_failed", f"the blob could not be stored; the send authorization {used}", 503) from None
        record = self.emit(EventType.SUBMISSION_ACCEPTANCE, digest, home=home)
        if record is not None:
            self.store.set_acceptance(blob_id, record)
        return {"id": blob_id, "digest": digest.hex(), "evidence_id": None if record is None else record.hex()}

    def _authorize(self, proof: Any, group_id: int, digest: bytes, home: int | None) -> Decision:
        """The authorizer's decision; RegistryError when it could not be had (503 with
        ``Retry-After`` where a retry may succeed)."""
        retry = {"Retry-After": str(RETRY_AFTER)}
        try:
            with deadline(UPSTREAM_DEADLINE):  # however slowly the upstreams answer
                decision = self.authorizer.authorize(proof, group_id, digest)
        except UnknownRegistry:
            raise RegistryError("unknown_registry", "the proof's scope names a registry this relay does not trust", 403) from None
        except NullifierAuthorityUnavailable as exc:
            # Never accepted on this relay's word alone: the proof may be spent elsewhere.
            if home is not None:  # a region's registry (single mode: health probes the ledger)
                self._set_upstream(home, False)
            log.warning("nullifier authority unavailable: %s", exc_type(exc))
            raise RegistryError(
                "nullifier_authority_unavailable",
                "the groups' home registry cannot confirm the nullifier now; the send authorization was not used",
                503,
                {"Retry-After": str(exc.retry_after)},
            ) from None
        except NullifierClaimRefused as exc:
            if home is not None:
                self._set_upstream(home, True)
            raise RegistryError(exc.code, "the home registry refused the nullifier claim", 403) from None
        except RemoteAuthorizationError as exc:
            self._set_upstream(home, False)
            if exc.may_be_spent:
                # The registry may have claimed the nullifier (e.g. it answered after our
                # timeout): a retry of this proof could be nullifier_reused. An idempotent
                # re-authorization was rejected: one slot could then reach many mailboxes.
                raise RegistryError(
                    "authorization_unknown",
                    f"{exc}; the send authorization may be used up: send again with a new slot",
                    503,
                ) from None
            raise RegistryError("authorization_unavailable", f"{exc}; the send authorization was not used", 503, retry) from None
        except (LedgerError, Web3Exception, requests.RequestException, OSError) as exc:
            # The local path could not read the ledger: unavailable, not a verdict on the proof.
            self._set_upstream(home, False)
            log.warning("ledger unavailable for authorization: %s", exc_type(exc))
            raise RegistryError("authorization_unavailable", "the ledger cannot be reached", 503, retry) from None
        except (ValueError, TypeError) as exc:
            # A ledger answering something unreadable (web3 raises JSONDecodeError for a
            # body that is not JSON, TypeError/ValueError for a null or non-hex result):
            # the proof was parsed before any read, so this is an outage, not a verdict.
            self._set_upstream(home, False)
            log.warning("unreadable ledger answer during authorization: %s", exc_type(exc))
            raise RegistryError("authorization_unavailable", "the ledger answered unreadably", 503, retry) from None
        self._set_upstream(home, True)
        return decision

    def _release(self, group_id: int, decision: Decision, home: int | None = None) -> bool:
        """Undo this relay's own nullifier claim of an accepted send that was not stored."""
        route = None if home is None else self.routes.get(home)
        store = self._nullifiers if route is None else route.nullifiers
        if store is None or decision.nullifier is None or decision.epoch is None:
            return False
        try:
            return store.release(group_id, decision.nullifier, decision.epoch)
        except sqlite3.Error as exc:
            log.error("nullifier release failed: %s", exc_type(exc))
            return False

    def pickup(self, tag: str, secret: bytes) -> dict[str, Any]:
        mailbox = _hex32(tag, "mailbox tag")
        try:
            blobs = self.store.pickup(mailbox, secret)
        except WrongCapability:
            raise RegistryError("forbidden", "wrong pickup capability", 403) from None
        except OSError as exc:
            log.error("blob store read failed: %s", exc_type(exc))
            raise RegistryError("store_failed", "the mailbox cannot be read now", 503) from None
        out = []
        for b in blobs:
            if not b.handed_over:
                links = () if b.acceptance is None else (b.acceptance,)
                self.emit(EventType.CONTENT_CONSIGNMENT, b.digest, links=links, home=b.home)
            out.append(
                {"id": b.id, "blob": base64.b64encode(b.blob).decode(), "digest": b.digest.hex(), "received_at": int(b.received_at)}
            )
        with self._counts_lock:
            self.pickups += 1
        return {"blobs": out}

    def ack(self, blob_id: str, secret: bytes) -> dict[str, Any]:
        if not _BLOB_ID.fullmatch(blob_id):
            raise RegistryError("not_found", "no such blob", 404)
        try:
            # The access record is queued (durably) before the blob is erased: an ack cut
            # off after the erase still leaves its evidence (at worst a repeated ack after
            # a failed erase queues a second one).
            removed = self.store.delete(blob_id, secret, before_erase=self._record_access)
        except WrongCapability:
            raise RegistryError("forbidden", "wrong pickup capability", 403) from None
        except OSError as exc:  # not erased: the blob stays listed, the ack can be repeated
            log.error("blob store erase failed: %s", exc_type(exc))
            raise RegistryError("store_failed", "the blob could not be deleted now", 503) from None
        if removed is None:
            raise RegistryError("not_found", "no such blob", 404)
        with self._counts_lock:
            self.acks += 1
        return {"id": blob_id, "deleted": True}

    def _record_access(self, blob: StoredBlob) -> None:
        links = () if blob.acceptance is None else (blob.acceptance,)
        self.emit(EventType.CONTENT_ACCESS_TRACKING, blob.digest, links=links, home=blob.home)

    # -------------------------------------------------------------- housekeeping

    def purge(self) -> int:
        """Delete blobs past the retention, and nullifiers whose epoch can no longer be accepted."""
        now = self.clock()
        removed = self.store.purge(now - self.settings.retention_seconds)
        s = self.settings
        oldest = min(acceptable_epochs(now, s.epoch_length, s.clock_skew))
        if self._nullifiers is not None:
            for group in list(self._groups_seen):
                self._nullifiers.purge(group, oldest)
        for home, group in list(self._route_groups):
            route = self.routes.get(home)
            if route is not None and route.nullifiers is not None:
                route.nullifiers.purge(group, oldest)
        return removed

    def probe(self) -> None:
        """Ask the ledger (local mode) or the registry (registry mode) whether it answers,
        and the evidence log, if evidence is sent; in federated mode each trusted registry
        (its ledger too where it is checked locally). Each upstream is asked in a thread of
        its own within :data:`PROBE_TIMEOUT` in all (registry/relay/deadline.py): one that
        trickles is down by then and delays no other's status."""
        # key -> (probe, the object and attribute its verdict goes to, what to log)
        jobs: dict[str, tuple[Callable[[], None], object, str, str]] = {}
        for tag, route in self.routes.items():
            jobs[f"region {tag}"] = (_all(route.probes), route, "upstream_ok", f"the upstreams of region {route.region}")
        if self.settings.evidence_url is not None:
            jobs["evidence"] = (_registry_probe(self.settings.evidence_url), self, "evidence_log_ok", "the evidence log")
        if self._probe is not None:
            jobs["upstream"] = (self._probe, self, "upstream_ok", _UPSTREAM[self.settings.auth_mode])
        started = []
        for key, (probe, target, attr, what) in jobs.items():
            running = self._probing.get(key)
            if running is not None and running.is_alive():
                setattr(target, attr, False)  # still not done since the last round: down
                continue
            thread = threading.Thread(target=_probe_one, args=(probe, target, attr, what), name=f"probe {key}", daemon=True)
            self._probing[key] = thread
            thread.start()
            started.append(thread)
        for thread in started:
            thread.join(PROBE_TIMEOUT + 1.0)  # each ends by its deadline (a DNS lookup may not)

    def upstreams(self) -> dict[str, bool | None]:
        """Federated mode: per trusted region, whether its registry (and ledger, where
        checked locally) answered last (None: not asked yet)."""
        return {route.region: route.upstream_ok for route in self.routes.values()}

    def registries(self) -> list[dict[str, Any]]:
        """The trusted registries (public facts only: ``GET /v1/registries``)."""
        trust = self.settings.trust_list
        return [
            {"region": e.region, "chain_id": e.ref.chain_id, "contract": e.ref.contract, "registry_url": public_url(e.registry_url)}
            for e in (trust or ())
        ]

    def count_send(self, outcome: str) -> None:
        with self._counts_lock:
            self.sends[outcome] += 1

    def health_reasons(self) -> list[str]:
        """Why the relay is degraded (docs/relay.md "Health"); empty: ok."""
        reasons = []
        if self.upstream_ok is False:
            reasons.append("ledger_down" if self.settings.auth_mode == "local" else "registry_unreachable")
        if any(route.upstream_ok is False for route in self.routes.values()):
            reasons.append("region_unreachable")
        if self.evidence_log_ok is False:
            reasons.append("evidence_log_unreachable")
        emitters = self.emitters()
        if any(e.unknown_signer for e in emitters):
            reasons.append("evidence_unregistered_key")
        if emitters and sum(e.pending() for e in emitters) > self.settings.evidence_backlog:
            reasons.append("evidence_backlog")
        return reasons

    def evidence_summary(self) -> dict[str, Any]:
        """Pending and suppressed records over every log, and the relay's signing address
        (None each without evidence)."""
        emitters = self.emitters()
        if not emitters:
            return {"evidence_pending": None, "issuer": None, "evidence_suppressed": None}
        return {
            "evidence_pending": sum(e.pending() for e in emitters),
            "issuer": emitters[0].address,
            "evidence_suppressed": sum(e.suppressed_total() for e in emitters),
        }

    def start(self) -> None:
        self.access_log.start()
        for emitter in self.emitters():
            emitter.start(self.settings.evidence_interval)

    def close(self) -> None:
        for emitter in self.emitters():
            emitter.close()
        self.access_log.close()
        close = getattr(self.authorizer, "close", None)
        if callable(close):
            close()
        self.store.close()
        if self._nullifiers is not None:
            self._nullifiers.close()
        self._dir_lock.release()


_UPSTREAM = {"local": "the ledger", "registry": "the registry"}
#: Every reason /v1/health may give (docs/relay.md "Health"); also the labels of
#: ``zkid_relay_degraded``.
HEALTH_REASONS = (
    "ledger_down", "registry_unreachable", "region_unreachable", "evidence_log_unreachable", "evidence_unregistered_key",
    "evidence_backlog",
)
#: Seconds a health probe (every request to one upstream, or region) may take in all.
PROBE_TIMEOUT = 3.0
#: Bytes of a health answer a probe reads.
PROBE_ANSWER_LIMIT = 64 * 1024


def _probe_one(probe: Callable[[], None], target: object, attr: str, what: str) -> None:
    """Run ``probe`` within :data:`PROBE_TIMEOUT` and set ``target.attr`` to whether it answered."""
    try:
        with deadline(PROBE_TIMEOUT):
            probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        if getattr(target, attr) is not False:
            log.warning(
                "no answer from %s (%s): health is degraded until it answers; what needs it is refused with"
                " 503 meanwhile, queued evidence waits (nothing is lost)", what, exc_type(exc),
            )
        setattr(target, attr, False)
    else:
        if getattr(target, attr) is False:
            log.info("%s: answering again", what)
        setattr(target, attr, True)


def _all(probes: tuple[Callable[[], None], ...]) -> Callable[[], None]:
    def probe() -> None:
        for one in probes:
            one()

    return probe


def _ledger_probe(rpc_url: str | None) -> Callable[[], None]:
    assert rpc_url is not None
    w3 = ledger_web3(rpc_url, PROBE_TIMEOUT)  # obeys the probe's deadline

    def probe() -> None:
        w3.eth.block_number

    return probe


class _Probes:
    """Health probes of a federated relay's routes (registry/relay/federation.py)."""

    def ledger(self, rpc_url: str) -> Callable[[], None]:
        return _ledger_probe(rpc_url)

    def registry(self, url: str) -> Callable[[], None]:
        return _registry_probe(url)


def _registry_probe(url: str) -> Callable[[], None]:
    def probe() -> None:
        # Only silence counts as unreachable: any HTTP answer means it is there.
        with deadline_client(url, PROBE_TIMEOUT) as http:
            request(http, "GET", "/v1/health", max_bytes=PROBE_ANSWER_LIMIT)

    return probe


class _RelayCollector(Collector):
    """The relay's ``/metrics`` (docs/relay.md "Metrics"): counts and sizes only."""

    def __init__(self, relay: Relay, limiter: IpRateLimiter) -> None:
        self.relay = relay
        self.limiter = limiter

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        relay = self.relay
        with relay._counts_lock:
            sends = dict(relay.sends)
            pickups, acks = relay.pickups, relay.acks
        family = CounterMetricFamily("zkid_relay_sends", "POST /v1/blobs answers by outcome (accepted or the error code).", labels=["outcome"])
        for outcome, count in sorted(sends.items()):
            family.add_metric([outcome], float(count))
        yield family
        yield CounterMetricFamily("zkid_relay_pickups", "Mailbox pickups answered.", value=float(pickups))
        yield CounterMetricFamily("zkid_relay_acks", "Blobs acknowledged (deleted).", value=float(acks))
        limited = CounterMetricFamily("zkid_rate_limited", "Requests refused by the per-IP limits (429), by route class.", labels=["class"])
        for route_class, count in sorted(self.limiter.refused.items()):
            limited.add_metric([route_class], float(count))
        yield limited
        yield GaugeMetricFamily("zkid_relay_blobs", "Blobs held.", value=float(relay.store.count()))
        reasons = set(relay.health_reasons())
        degraded = GaugeMetricFamily("zkid_relay_degraded", "1 while /v1/health gives this reason.", labels=["reason"])
        for reason in HEALTH_REASONS:
            degraded.add_metric([reason], 1.0 if reason in reasons else 0.0)
        yield degraded
        emitters = relay.emitters()
        if emitters:
            pending = sum(e.pending() for e in emitters)
            yield GaugeMetricFamily("zkid_relay_evidence_pending", "Evidence records queued.", value=float(pending))
            sent, dropped = sum(e.sent for e in emitters), sum(e.dropped for e in emitters)
            yield CounterMetricFamily("zkid_relay_evidence_sent", "Evidence records the log took.", value=float(sent))
            yield CounterMetricFamily("zkid_relay_evidence_dropped", "Evidence records the log refused.", value=float(dropped))
            suppressed = sum(e.suppressed_total() for e in emitters)
            yield CounterMetricFamily(
                "zkid_relay_evidence_suppressed", "Rejection records not signed (rate limit).", value=float(suppressed)
            )


def create_relay_app(
    settings: RelaySettings, *, authorizer: SendAuthorizer | None = None, clock: Callable[[], float] = time.time
) -> FastAPI:
    """The relay app; ``app.state.relay`` is its :class:`Relay`. Background tasks (evidence
    sender, connection log, retention purge) run for the app's lifespan."""
    relay = Relay(settings, authorizer, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        relay.start()
        tasks = [
            asyncio.create_task(repeat(relay.purge, settings.purge_interval, "relay purge")),
            asyncio.create_task(repeat(relay.probe, settings.probe_interval, "relay probe")),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            relay.close()

    app = FastAPI(title="letro-zkid relay", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    # An API without pages: a path with a trailing slash is a JSON 404, not a redirect.
    app.router.redirect_slashes = False
    app.state.relay = relay
    install_error_handlers(app)
    _add_routes(app, relay, settings)
    _add_middleware(app, relay, settings)
    return app


async def repeat(fn: Callable[[], object], interval: float, what: str) -> None:
    """Run ``fn`` in a worker thread every ``interval`` seconds until cancelled. A failure is
    logged by its type only (registry/_utils/logs.py) and the loop goes on."""
    while True:
        try:
            await run_in_threadpool(fn)
        except Exception as exc:
            log.error("%s failed: %s", what, exc_type(exc))
        await asyncio.sleep(interval)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = strict_json.loads(raw)  # duplicate keys, deep nesting, NaN refused
    except strict_json.JsonInputError as exc:
        raise json_input_error(exc) from None
    if not isinstance(data, dict):
        raise RegistryError("malformed", "the body must be a JSON object", 422)
    return data


def _add_routes(app: FastAPI, relay: Relay, settings: RelaySettings) -> None:
    """``POST /v1/blobs``, mailbox pickup, ack and health (docs/relay.md)."""

    @app.post("/v1/blobs", status_code=201)
    async def post_blob(request: Request) -> JSONResponse:
        try:
            body = await _json_body(request)
            # Federated: in the threads of the send's region (a hanging region blocks no other).
            result = await anyio.to_thread.run_sync(relay.submit, body, limiter=relay.send_limiter(body))
        except RegistryError as exc:
            relay.count_send(exc.code)  # our own vocabulary: a bounded label set
            raise
        relay.count_send("accepted")
        return JSONResponse(result, status_code=201)

    @app.get("/v1/mailboxes/{tag}")
    async def get_mailbox(tag: str, request: Request) -> JSONResponse:
        secret = _capability(request)
        return JSONResponse(await run_in_threadpool(relay.pickup, tag, secret))

    @app.post("/v1/blobs/{blob_id}/ack")
    async def ack_blob(blob_id: str, request: Request) -> JSONResponse:
        secret = _capability(request)
        return JSONResponse(await run_in_threadpool(relay.ack, blob_id, secret))

    @app.get("/v1/health")
    def health() -> JSONResponse:
        reasons = relay.health_reasons()
        federated = settings.trust_list is not None
        body: dict[str, Any] = {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "region": settings.region,
            "auth_mode": "federated" if federated else settings.auth_mode,
            "blobs": relay.store.count(),
            **relay.evidence_summary(),
        }
        if federated:
            body["upstreams"] = relay.upstreams()
        return JSONResponse(body)

    @app.get("/v1/registries")
    def registries() -> JSONResponse:
        return JSONResponse({"region": settings.region, "registries": relay.registries()})


def _add_middleware(app: FastAPI, relay: Relay, settings: RelaySettings) -> None:
    """``/metrics`` and the middleware. Outermost first: the connection log sees every
    request, the rate limit comes before reading any body, the size limit before parsing."""

    def body_limit(scope: Any) -> int:
        # Only a send carries a body worth the name; acks and reads get a small bound.
        if scope.get("method") == "POST" and scope.get("path") == "/v1/blobs":
            return settings.max_body_bytes
        return min(settings.max_body_bytes, SMALL_BODY)

    limiter = relay_limiter(settings)  # registry/web/rate_limit.py, as the registry's
    app.state.rate_limiter = limiter
    metrics_registry = CollectorRegistry(auto_describe=True)
    metrics_registry.register(_RelayCollector(relay, limiter))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimitMiddleware, limit=body_limit, timeout=settings.body_timeout)
    # As the registry's: an unexpected exception is a JSON 500 and its type alone is logged.
    app.add_middleware(ErrorGuardMiddleware)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, classify=relay_route_class)
    app.add_middleware(AccessLogMiddleware, log=relay.access_log)
