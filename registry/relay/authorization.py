"""Send authorization for relays: checked locally against the ledger, or asked of a registry.

Both paths apply the checks of ``docs/authorization.md`` and return the same
:class:`registry.service.authorization.Decision`:

- the *local* path (:func:`LocalAuthorizer`) runs :class:`registry.service.authorization.Authorizer`
  with roots read straight from the ``ZkIdRegistry`` contract (:class:`LedgerRoots`) and
  nullifiers in the relay's own SQLite file, so a relay trusts the chain and nobody else;
- the *remote* path (:class:`RegistryAuthClient`) posts the proof to a registry's
  ``POST /v1/authorize`` (the registry's HTTP API, ``registry/web/app.py``).

Root rule (the contract's ``isRootValid``, ``contracts/ZkIdRegistry.sol``): a root is valid
while it is the group's current root, or while ``now - rootSupersededAt <= rootWindow``;
``rootSupersededAt == 0`` for a root that is not current means it never was a root.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import httpx

from registry._utils.integers import MAX_GROUP_ID, UINT64_MAX, bounded_int, json_integer
from registry.service.authorization import (
    Authorizer,
    Decision,
    GroupPolicy,
    NullifierStore,
    Reason,
    RootStatus,
    SqliteNullifierStore,
)
from registry.client._http import HttpSession, RegistryClientError, json_of, request
from registry.ledger.registry_contract import RegistryContract
from registry.relay.deadline import deadline_client
from zk import strict_json
from zk.field import R
from zk.proof import SemaphoreProof
from zk.relay_scope import RegistryRef


#: Bytes of a registry's answer to ``POST /v1/authorize`` a relay reads (a decision is
#: a few hundred): more is cut off as no answer, never held in memory.
ANSWER_LIMIT = 64 * 1024


class RemoteAuthorizationError(RuntimeError):
    """The registry could not be asked (network error, 5xx, or an answer that is not a decision).

    ``may_be_spent``: the request may have reached the registry, which then may have
    claimed the proof's nullifier (a timeout after sending, a 5xx other than
    ``index_stale``, a garbled answer): the send authorization must be taken as used up.
    False only when the registry surely did not claim it (no connection, 429, index_stale).
    """

    def __init__(self, message: str, *, may_be_spent: bool = False) -> None:
        super().__init__(message)
        self.may_be_spent = may_be_spent


class LedgerRoots:
    """A :class:`registry.service.authorization.RootOracle` reading roots from the contract.

    Answers are cached per chain head: the cache is dropped whenever the block number has
    moved by ``cache_blocks`` or more since it was filled, so a relay costs the node one
    ``eth_blockNumber`` per check plus a few calls per new block.

    ``head_interval`` > 0: the head itself is read at most once per that many seconds
    (a send's three lookups, and concurrent sends, share one read: each read costs the
    relay ~1 ms of CPU in web3). A root this view does not know yet (anchored since)
    is looked up again on a freshly read head, so new roots are never refused for it;
    a superseded root may count as current for at most ``head_interval`` seconds longer
    (keep it far below the groups' root window).

    A group's admin, root and root window come from one ``getGroup`` per group and view;
    ``groupCount`` only grows on the contract, so a group seen to exist is not asked
    about again (a group a reorg took back has no root: its sends are refused).
    """

    def __init__(
        self, registry: RegistryContract, cache_blocks: int = 1, head_interval: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(cache_blocks, bool) or not isinstance(cache_blocks, int) or cache_blocks < 1:
            raise ValueError("cache_blocks must be a positive integer")
        if not 0.0 <= head_interval <= 60.0:
            raise ValueError("head_interval must be in [0, 60] seconds")
        self._registry = registry
        self._cache_blocks = cache_blocks
        self._head_interval = head_interval
        self._monotonic = monotonic
        self._head_at = 0.0
        self._lock = threading.Lock()
        self._block: int | None = None
        self._current: dict[int, int] = {}
        self._windows: dict[int, int] = {}
        self._superseded: dict[tuple[int, int], int] = {}
        self._admins: dict[int, str] = {}
        self._group_count: int | None = None
        self._groups_seen = 0  # groupCount seen at some head: groups below it exist

    def _read_head(self) -> int:
        return int(self._registry.w3.eth.block_number)

    def _refresh(self, force: bool = False) -> None:
        now = self._monotonic()
        if not force and self._block is not None and now - self._head_at < self._head_interval:
            return
        head = self._read_head()
        self._head_at = now
        if self._block is None or head < self._block or head - self._block >= self._cache_blocks:
            self._block = head
            self._current.clear()
            self._windows.clear()
            self._superseded.clear()
            self._admins.clear()
            self._group_count = None

    def group_exists(self, group_id: int) -> bool:
        with self._lock:
            if 0 <= group_id < self._groups_seen:
                return True
            for force in (False, True) if self._head_interval > 0 else (False,):
                self._refresh(force)  # forced: created since the head was read?
                if self._group_count is None:
                    self._group_count = self._registry.group_count()
                    self._groups_seen = max(self._groups_seen, self._group_count)
                if 0 <= group_id < self._group_count:
                    return True
            return False

    def _group(self, group_id: int) -> None:
        """Admin, current root and root window of the group in this view (the lock held)."""
        if group_id not in self._current:
            info = self._registry.group(group_id)
            self._current[group_id] = info.root
            self._windows[group_id] = info.root_window
            self._admins[group_id] = info.admin

    def group_admin(self, group_id: int) -> str:
        """The group's admin account on the contract (checksummed address)."""
        with self._lock:
            self._refresh()
            self._group(group_id)
            return self._admins[group_id]

    def root_status(self, group_id: int, root: int, now: float) -> RootStatus:
        with self._lock:
            self._refresh()
            status = self._root_status(group_id, root, now)
            if status is RootStatus.UNKNOWN and self._head_interval > 0:
                self._refresh(force=True)  # anchored since the head was read?
                status = self._root_status(group_id, root, now)
        return status

    def _root_status(self, group_id: int, root: int, now: float) -> RootStatus:
        """The verdict of the cached view (the lock held)."""
        self._group(group_id)
        if root == self._current[group_id] and root != 0:
            return RootStatus.VALID
        key = (group_id, root)
        if key not in self._superseded:
            self._superseded[key] = self._registry.root_superseded_at(group_id, root)
        superseded = self._superseded[key]
        window = self._windows[group_id]
        if superseded == 0:
            return RootStatus.UNKNOWN
        return RootStatus.VALID if now - superseded <= window else RootStatus.EXPIRED


def ledger_policies(
    roots: LedgerRoots,
    epoch_length: int = 600,
    message_limit: int = 100,
    clock_skew: int = 30,
    *,
    operator: str | None = None,
    send_groups: Collection[int] | None = None,
) -> Callable[[int], GroupPolicy | None]:
    """Group policies for every group that exists on the ledger (same parameters for all,
    as a registry serves them).

    Only the operator's send groups are served (docs/admission.md, "Send groups"): a
    group must be in ``send_groups`` (None: any) and administered on the contract by
    ``operator`` (None: any; a relay passes the deployment's operator). Any other group
    that exists is refused with ``group_not_served``: anyone can create a group on the
    contract and fill it without the operator's admission."""
    listed = None if send_groups is None else frozenset(send_groups)
    admin = None if operator is None else operator.lower()

    def policy(group_id: int) -> GroupPolicy | None:
        if bounded_int(group_id, 0, MAX_GROUP_ID) is None:
            return None
        if not roots.group_exists(group_id):
            return None
        served = (listed is None or group_id in listed) and (admin is None or roots.group_admin(group_id).lower() == admin)
        return GroupPolicy(group_id, epoch_length, message_limit, clock_skew, served=served)

    return policy


def LocalAuthorizer(  # noqa: N802 - a factory that reads as the class it builds
    registry: RegistryContract,
    nullifiers_path: Path | str | NullifierStore,
    *,
    policies: Callable[[int], GroupPolicy | None] | Mapping[int, GroupPolicy] | None = None,
    epoch_length: int = 600,
    message_limit: int = 100,
    clock_skew: int = 30,
    cache_blocks: int = 1,
    clock: Callable[[], float] = time.time,
    operator: str | None = None,
    send_groups: Collection[int] | None = None,
    deployment: RegistryRef | None = None,
    head_interval: float = 0.0,
) -> Authorizer:
    """``Authorizer(policies, LedgerRoots(registry), SqliteNullifierStore(nullifiers_path))``.

    Without ``policies``, every group existing on the ledger gets the given parameters,
    and is served when it is one of ``send_groups`` administered by ``operator``
    (:func:`ledger_policies`). ``nullifiers_path`` may be an open store (the caller then
    closes it); ``head_interval``: see :class:`LedgerRoots`. ``deployment``: the (chain id, registry contract) scopes must name
    (docs/authorization.md), normally the deployment manifest's; by default ``registry``'s
    own address on the chain its node reports.
    """
    if deployment is None:
        deployment = RegistryRef(int(registry.w3.eth.chain_id), registry.address)
    elif deployment.contract != registry.address.lower():
        raise ValueError("the deployment's registry contract is not the contract read for roots")
    roots = LedgerRoots(registry, cache_blocks, head_interval)
    table = (
        policies
        if policies is not None
        else ledger_policies(
            roots, epoch_length, message_limit, clock_skew, operator=operator, send_groups=send_groups
        )
    )
    store = SqliteNullifierStore(nullifiers_path) if isinstance(nullifiers_path, (str, Path)) else nullifiers_path
    return Authorizer(table, roots, store, clock=clock, registry=deployment)


class RegistryAuthClient(HttpSession):
    """Asks a registry's ``POST /v1/authorize``; returns the registry's :class:`Decision`.

    A refusal is a decision (``authorized=False`` with its reason), whatever HTTP status
    carries it; only an unreachable or broken registry raises
    :class:`RemoteAuthorizationError`, so a caller can tell "no" from "could not ask".
    """

    def __init__(self, url: str, timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        # Its own client obeys the relay's whole-request deadline (registry/relay/deadline.py).
        super().__init__(url, timeout, client if client is not None else deadline_client(url, timeout))
        self._owned = client is None

    def authorize(self, proof: SemaphoreProof | Mapping[str, Any] | str, group_id: int, blob_digest: bytes) -> Decision:
        if isinstance(proof, SemaphoreProof):
            body_proof: Any = proof.to_dict()
        elif isinstance(proof, str):
            try:
                body_proof = strict_json.loads(proof)  # as the local path parses it
            except strict_json.JsonInputError:
                return Decision(False, Reason.MALFORMED)
        else:
            body_proof = dict(proof)
        if not isinstance(blob_digest, (bytes, bytearray)) or len(blob_digest) != 32:
            return Decision(False, Reason.MALFORMED)
        body = {"group_id": group_id, "proof": body_proof, "blob_digest": bytes(blob_digest).hex()}
        try:
            response = request(self._http, "POST", "/v1/authorize", json=body, max_bytes=ANSWER_LIMIT)
        except RegistryClientError as exc:
            # Sent, but no answer came back: the registry may have claimed the nullifier.
            what = "no answer from the registry" if exc.sent else "registry unreachable"
            raise RemoteAuthorizationError(f"{what} ({exc.message})", may_be_spent=exc.sent) from None
        if response.status_code == 429:  # the registry's per-IP limit, before anything is claimed
            raise RemoteAuthorizationError("the registry rate-limits this relay")
        if response.status_code >= 500:
            raise RemoteAuthorizationError(
                f"registry error {response.status_code}", may_be_spent=not _index_stale(response)
            )
        try:
            data = json_of(response)
        except ValueError:  # strict_json.JsonInputError: also duplicate keys, deep nesting
            raise RemoteAuthorizationError("registry answered with non-JSON", may_be_spent=response.status_code < 400) from None
        try:
            return _decision_from_json(data, response.status_code)
        except RemoteAuthorizationError as exc:
            # An answer we cannot read as a decision: a 2xx may have been an authorization.
            exc.may_be_spent = response.status_code < 400
            raise


def _index_stale(response: httpx.Response) -> bool:
    """A 503 refusal ``index_stale``: the registry refuses before it claims anything."""
    if response.status_code != 503:
        return False
    try:
        data = json_of(response)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("reason") == Reason.INDEX_STALE.value


def _decision_from_json(data: Any, status: int) -> Decision:
    if not isinstance(data, dict):
        raise RemoteAuthorizationError("registry answer is not a JSON object")
    if "reason" not in data:
        # A schema refusal (422/413) carries only {"error": {...}}: the request was malformed.
        error = data.get("error")
        if 400 <= status < 500 and isinstance(error, dict):
            return Decision(False, Reason.MALFORMED)
        raise RemoteAuthorizationError(f"unexpected registry answer (status {status})")
    try:
        reason = Reason(data["reason"])
    except (ValueError, TypeError):
        raise RemoteAuthorizationError("unknown reason in the registry's answer") from None
    authorized = data.get("authorized") is True
    if authorized != (reason is Reason.OK) or authorized != (status == 200):
        raise RemoteAuthorizationError("inconsistent registry answer")
    # A hostile or broken registry's values are refused like any unreadable answer, never
    # let through as an exception of their own (the relay would answer a bare 500).
    nullifier, epoch = data.get("nullifier"), data.get("epoch")
    if isinstance(nullifier, str) and nullifier.isascii() and nullifier.isdigit() and len(nullifier) <= 78:
        nullifier = int(nullifier)
    nullifier = None if nullifier is None else bounded_int(nullifier, 0, R - 1)
    epoch = None if epoch is None else bounded_int(json_integer(epoch), 0, UINT64_MAX)
    if (nullifier is None) != (data.get("nullifier") is None) or (epoch is None) != (data.get("epoch") is None):
        raise RemoteAuthorizationError("unreadable nullifier or epoch in the registry's answer")
    return Decision(authorized, reason, nullifier, epoch)
