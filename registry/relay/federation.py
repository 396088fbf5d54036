"""Federated authorization: a relay that trusts several regional registries (``--trust-list``).

Every send authorization carries its group's home registry in its scope: an ``LZE2``
scope packs the 96-bit tag of (chain id, registry contract) in bytes 4..15
(docs/authorization.md, :mod:`zk.relay_scope`). :class:`FederatedAuthorizer` reads that
tag (packed, not hashed: no guessing) and hands the proof to the authorizer of the
trusted registry with that tag (:class:`RegionRoute`):

- ``auth = "local"``: the proof is verified here against that registry's ledger
  (:func:`registry.relay.authorization.LocalAuthorizer` on ``rpc_url`` / ``contract``,
  the entry's ``send_groups`` administered by its ``operator``), then its nullifier is
  claimed in this relay's store *of that registry* and at the registry itself
  (``POST /v1/nullifiers/claim``, :class:`AuthorityNullifierStore`): in federated mode
  the home registry is always the nullifier authority of its groups, so a proof spent at
  any relay is refused at every other one;
- ``auth = "registry"``: the proof is posted to that registry's ``POST /v1/authorize``.

A tag that names no trusted registry raises :class:`UnknownRegistry` (the relay answers
403 ``unknown_registry``). Each registry has its own nullifier file in the relay's data
directory (``nullifiers-<tag>.sqlite``): group 0 of two registries are two groups.
An unreachable home registry is never replaced by this relay's own word: the send is
refused with 503 and ``Retry-After`` (docs/relay.md "Federated relays").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from web3 import Web3

from registry.ledger.errors import LedgerUnavailable
from registry.ledger.registry_contract import RegistryContract
from registry.relay.authorization import LocalAuthorizer, RegistryAuthClient
from registry.relay.deadline import DeadlineProvider
from registry.relay.nullifier_authority import AuthorityNullifierStore, NullifierAuthorityClient
from registry.relay.trust_list import TrustedRegistry, TrustList
from registry.service.authorization import Decision, Reason, SqlNullifierStore, parse_proof
from zk.relay_scope import ScopeError, ScopeVersionError, decode_scope

log = logging.getLogger(__name__)

#: Seconds each step of an upstream call may take (the relay bounds a whole send with a
#: deadline of its own: registry/relay/app.py ``UPSTREAM_DEADLINE``).
UPSTREAM_TIMEOUT = 10.0
#: Tag width in hex digits (96 bits), as file names and logs show it.
TAG_HEX = 24


class Authorizer(Protocol):
    def authorize(self, proof: Any, group_id: int, blob_digest: bytes) -> Decision: ...


class UnknownRegistry(LookupError):
    """The proof's scope names a registry that is not on the trust list."""


def tag_hex(tag: int) -> str:
    """The 96-bit registry tag as 24 lowercase hex digits."""
    return f"{tag:0{TAG_HEX}x}"


def nullifiers_file(tag: int) -> str:
    """This relay's nullifier store of one trusted registry (in the data directory)."""
    return f"nullifiers-{tag_hex(tag)}.sqlite"


def evidence_queue_file(tag: int) -> str:
    """This relay's queue of evidence records bound for one registry's log."""
    return f"evidence_queue-{tag_hex(tag)}.sqlite"


def scope_home(proof: Any) -> int | Reason:
    """The registry tag in ``proof``'s scope, or the refusal a verifier gives a proof whose
    scope cannot be read (``malformed``, ``scope_version_unsupported``, ``bad_scope``)."""
    try:
        parsed = parse_proof(proof)
    except (ValueError, TypeError):
        return Reason.MALFORMED
    try:
        return decode_scope(parsed.scope).registry_tag
    except ScopeVersionError:
        return Reason.SCOPE_VERSION_UNSUPPORTED
    except ScopeError:
        return Reason.BAD_SCOPE


@dataclass
class RegionRoute:
    """One trusted registry as the relay uses it."""

    entry: TrustedRegistry
    authorizer: Authorizer
    #: This relay's own nullifier store of the registry (local authorization), else None.
    nullifiers: SqlNullifierStore | None = None
    #: Health checks: the ledger (local) and the registry itself; each raises when down.
    probes: tuple[Callable[[], None], ...] = ()
    #: Whether the last probe or request found the upstreams answering (None: not asked yet).
    upstream_ok: bool | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.entry.region


class FederatedAuthorizer:
    """Routes each proof to its home registry's authorizer (module docstring)."""

    def __init__(self, routes: Mapping[int, RegionRoute]) -> None:
        self.routes = dict(routes)

    def route(self, tag: int) -> RegionRoute:
        found = self.routes.get(tag)
        if found is None:
            raise UnknownRegistry(tag_hex(tag))
        return found

    def authorize(self, proof: Any, group_id: int, blob_digest: bytes) -> Decision:
        """The home registry's decision; :class:`UnknownRegistry` if it is not trusted.
        The proof is parsed once here and handed on parsed."""
        try:
            parsed = parse_proof(proof)
        except (ValueError, TypeError):
            return Decision(False, Reason.MALFORMED)
        home = scope_home(parsed)
        if isinstance(home, Reason):
            return Decision(False, home)
        return self.route(home).authorizer.authorize(parsed, group_id, blob_digest)

    def close(self) -> None:
        for route in self.routes.values():
            for close in route.closers:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing the others matters more
                    log.warning("closing the authorizer of %s failed", route.region)


class ChainChecked:
    """A local route's authorizer that first makes sure its node serves the entry's chain:
    the same contract address exists on many chains (a deployer's first contract), so a
    trust list pointing ``rpc_url`` at the wrong ledger would verify one region's proofs
    against another's roots. Until the node has answered with the right chain id, every
    send is refused as unavailable (:class:`LedgerUnavailable`: 503), never verified."""

    def __init__(self, inner: Authorizer, w3: Web3, entry: TrustedRegistry) -> None:
        self._inner = inner
        self._w3 = w3
        self._entry = entry
        self._checked = False

    def check(self) -> None:
        """Raise :class:`LedgerUnavailable` unless the node serves the entry's chain."""
        actual = int(self._w3.eth.chain_id)
        if actual != self._entry.ref.chain_id:
            raise LedgerUnavailable(
                f"region {self._entry.region}: rpc_url serves chain {actual}, not {self._entry.ref.chain_id}"
            )
        self._checked = True

    def authorize(self, proof: Any, group_id: int, blob_digest: bytes) -> Decision:
        if not self._checked:
            self.check()
        return self._inner.authorize(proof, group_id, blob_digest)


@dataclass(frozen=True)
class RouteParameters:
    """What every local route shares: the relay's epoch parameters, key and clock."""

    data_dir: Path
    key: bytes
    epoch_length: int
    message_limit: int
    clock_skew: int
    clock: Callable[[], float] = time.time
    head_interval: float = 0.25


def build_routes(trust: TrustList, params: RouteParameters, probe_factory: ProbeFactory) -> dict[int, RegionRoute]:
    """One :class:`RegionRoute` per trusted registry (ValueError naming the region for an
    entry that cannot be served safely)."""
    routes: dict[int, RegionRoute] = {}
    try:
        for entry in trust:
            routes[entry.tag] = _registry_route(entry, probe_factory) if entry.auth == "registry" else _local_route(
                entry, params, probe_factory
            )
    except BaseException:
        FederatedAuthorizer(routes).close()
        raise
    return routes


class ProbeFactory(Protocol):
    def ledger(self, rpc_url: str) -> Callable[[], None]: ...

    def registry(self, url: str) -> Callable[[], None]: ...


def _registry_route(entry: TrustedRegistry, probes: ProbeFactory) -> RegionRoute:
    client = RegistryAuthClient(entry.registry_url)
    return RegionRoute(entry, client, None, (probes.registry(entry.registry_url),), closers=[client.close])


def _local_route(entry: TrustedRegistry, params: RouteParameters, probes: ProbeFactory) -> RegionRoute:
    assert entry.rpc_url is not None  # TrustList refuses a local entry without one
    if entry.send_groups and entry.operator is None:
        # Fail closed: anyone can create a group on a contract; only the operator's serve.
        raise ValueError(
            f"region {entry.region}: auth = \"local\" with send_groups needs operator = \"0x...\" in its [[registry]]"
            " (the groups' admin on the contract: the deployer in that registry's deployment.json)"
        )
    if not entry.send_groups:
        log.warning("region %s: no send_groups: its sends are refused (group_not_served)", entry.region)
    provider = DeadlineProvider(entry.rpc_url, UPSTREAM_TIMEOUT)  # calls obey the send's deadline
    w3 = Web3(provider)
    contract = RegistryContract(w3, Web3.to_checksum_address(entry.ref.contract))
    local = SqlNullifierStore(params.data_dir / nullifiers_file(entry.tag))
    authority = NullifierAuthorityClient(entry.registry_url, params.key, entry.ref, clock=params.clock)
    authorizer = LocalAuthorizer(
        contract,
        AuthorityNullifierStore(local, authority),
        epoch_length=params.epoch_length,
        message_limit=params.message_limit,
        clock_skew=params.clock_skew,
        clock=params.clock,
        operator=entry.operator,
        deployment=entry.ref,
        head_interval=params.head_interval,
        send_groups=entry.send_groups,
    )
    checked = ChainChecked(authorizer, w3, entry)
    route_probes = (probes.ledger(entry.rpc_url), checked.check, probes.registry(entry.registry_url))
    return RegionRoute(entry, checked, local, route_probes, closers=[authority.close, local.close, provider.close])
