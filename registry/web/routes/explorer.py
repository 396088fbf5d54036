"""The explorer's read-only JSON (docs/explorer.md, docs/api.md "Explorer"): what a registry
has anchored, composed from public state only.

Everything here is public on the ledger or in the evidence log's checkpoints: groups,
roots and their validity windows, ``addMembers`` transactions (block, member count, gas,
fee), the log's anchors and their signed checkpoints, and aggregate counters (the same
totals ``/metrics`` serves). Never an IP, a nullifier, or anything about one request.

Queries go through the service's public methods and the index's public readers; gas and
fees come from the ledger's receipts (cached: a confirmed receipt does not change).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from registry.service.authorization import Reason
from registry.web.errors import ApiRoute, error_responses
from registry.web.models import GroupId
from registry.web.routes import service_of

if TYPE_CHECKING:
    from registry.service.facade import RegistryService

router = APIRouter(route_class=ApiRoute, tags=["explorer"])

MAX_BATCHES = 200
#: At most one counter sample per this many seconds, and this many samples kept (a day).
SAMPLE_EVERY = 60.0
MAX_SAMPLES = 1440


#: Seconds the batch list is reused between page views (it changes once per batch).
BATCHES_TTL = 5.0


class ReceiptCache:
    """Gas used and fee of confirmed transactions, read once from the ledger.

    After a failed read the ledger is not asked again for ``RETRY_AFTER`` seconds: a page
    lists up to 200 batches, and with a hung node each read waits for the RPC timeout, so
    without the pause one page view would hold a worker for 200 timeouts (and a few views
    would starve the registry's other routes of threads)."""

    RETRY_AFTER = 30.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._known: dict[str, tuple[int, int] | None] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._failed_at: float | None = None
        #: The batch list last read from the index: (monotonic time, limit, rows).
        self.batch_rows: tuple[float, int, list[tuple[str, int, int, int]]] | None = None

    def gas_and_fee(self, service: RegistryService, tx_hash: str) -> tuple[int, int] | None:
        with self._lock:
            if tx_hash in self._known:
                return self._known[tx_hash]
            if self._failed_at is not None and self._clock() - self._failed_at < self.RETRY_AFTER:
                return None
        try:
            receipt = service.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            gas = int(receipt["gasUsed"])
            found: tuple[int, int] | None = (gas, gas * int(receipt.get("effectiveGasPrice", 0)))
        except Exception:  # the ledger is down: no figure now, asked again after a pause
            with self._lock:
                self._failed_at = self._clock()
            return None
        with self._lock:
            self._known[tx_hash] = found
            self._failed_at = None
        return found


class CounterSamples:
    """Aggregate counter totals sampled over time (in memory; lost on restart)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._samples: deque[dict[str, Any]] = deque(maxlen=MAX_SAMPLES)
        self._lock = threading.Lock()

    def sample(self, request: Request) -> list[dict[str, Any]]:
        # A sample is taken when a page is viewed: its time is kept to the minute only, so
        # the series does not record to the second when someone looked (docs/explorer.md).
        minute = int(self._clock() // SAMPLE_EVERY * SAMPLE_EVERY)
        with self._lock:
            if not self._samples or minute > self._samples[-1]["time"]:
                self._samples.append({"time": minute, **_counter_totals(request)})
            return list(self._samples)


def _counter_totals(request: Request) -> dict[str, Any]:
    metrics = request.app.state.metrics.registry
    outcomes = {r.value: int(metrics.get_sample_value("zkid_authorizations_total", {"reason": r.value}) or 0)
                for r in Reason}
    accepted = int(metrics.get_sample_value("zkid_registrations_accepted_total") or 0)
    return {"registrations_accepted": accepted, "authorizations": outcomes}


def _state(request: Request) -> tuple[ReceiptCache, CounterSamples]:
    state = request.app.state
    if getattr(state, "explorer_receipts", None) is None:
        state.explorer_receipts = ReceiptCache()
        state.explorer_samples = CounterSamples(service_of(request).clock)
    return state.explorer_receipts, state.explorer_samples


def _block_times(service: RegistryService) -> dict[int, int]:
    """Block number -> block time of every block where a group's root changed."""
    times: dict[int, int] = {}
    for group in service.index.groups():
        for root in service.index.roots(group.group_id):
            times[root.created_block] = root.created_time
    return times


def batches(service: RegistryService, receipts: ReceiptCache, limit: int = MAX_BATCHES) -> list[dict[str, Any]]:
    """The ``addMembers`` transactions of the indexed groups, newest first (one grouped
    query, reused for BATCHES_TTL seconds: a flood of page views costs one query per TTL)."""
    now = time.monotonic()
    cached = receipts.batch_rows
    if cached is None or now - cached[0] > BATCHES_TTL or cached[1] < limit:
        cached = (now, limit, service.index.batches(limit))
        receipts.batch_rows = cached
    out: list[dict[str, Any]] = [
        {"tx_hash": tx, "group_id": g, "block": block, "members": n} for tx, g, block, n in cached[2][:limit]
    ]
    times = _block_times(service)
    for entry in out:
        entry["time"] = times.get(entry["block"])
        found = receipts.gas_and_fee(service, entry["tx_hash"])
        entry["gas_used"], entry["fee_wei"] = (None, None) if found is None else (found[0], str(found[1]))
        entry["gas_per_member"] = None if found is None else found[0] // entry["members"]
    return out


def anchors(service: RegistryService, limit: int = 50) -> list[dict[str, Any]]:
    """The evidence log's anchors on the ledger, newest first, each with the log's signed
    checkpoint at that size; empty without an evidence log or while the ledger is down."""
    log = service.evidence
    if log is None:
        return []
    from registry.ledger.anchor_contract import AnchorContract, log_id

    contract = AnchorContract(service.w3, service.manifest.address("EvidenceAnchor"))
    try:
        found = contract.anchors(log_id(log.origin, log.verifier.public_key), limit=limit)
    except Exception:  # ledger down: no anchors to show now
        return []
    return [
        {
            "tree_size": a.tree_size,
            "root_hash": "0x" + a.root_hash.hex(),
            "block": a.block_number,
            "time": a.timestamp,
            "checkpoint": log.checkpoint(a.tree_size) if a.tree_size <= log.size else None,
        }
        for a in found
    ]


def overview(service: RegistryService) -> dict[str, Any]:
    health = service.health()
    manifest = service.manifest
    evidence = health.get("evidence")
    latest = service.evidence.latest_anchor() if service.evidence is not None else None
    return {
        "region": health["region"],
        "chain_id": health["chain_id"],
        "contracts": {name: manifest.address(name) for name in ("ZkIdRegistry", "EvidenceAnchor")},
        "head_block": health["head_block"],
        "indexed_block": health["indexed_block"],
        "status": health["status"],
        "reasons": health["reasons"],
        "groups": len(service.index.groups()),
        "evidence": None if evidence is None else {
            "origin": evidence["origin"],
            "log_key": service.evidence.verifier.vkey() if service.evidence is not None else None,
            "size": evidence["size"],
            "anchored_size": evidence["anchored_size"],
            "latest_anchor": None if latest is None else {
                "tree_size": latest.tree_size, "root_hash": "0x" + latest.root_hash.hex(),
                "tx_hash": "0x" + latest.tx_hash.hex(), "block": latest.block_number, "time": latest.block_time,
                "checkpoint": service.evidence.checkpoint(latest.tree_size) if service.evidence is not None else None,
            },
        },
    }


def roots(service: RegistryService, group_id: int) -> list[dict[str, Any]]:
    """A group's root history, newest first, with until when each superseded root stays valid."""
    group = service.index.group(group_id)
    if group is None:
        from registry.errors import RegistryError

        raise RegistryError("unknown_group", f"group {group_id} does not exist")
    out = []
    for r in reversed(service.index.roots(group_id)):
        out.append({
            "root": str(r.root), "created_block": r.created_block, "created_at": r.created_time,
            "superseded_block": r.superseded_block, "superseded_at": r.superseded_time,
            "valid_until": None if r.superseded_time is None else r.superseded_time + group.root_window,
        })
    return out


def charts(service: RegistryService, request: Request) -> dict[str, Any]:
    receipts, samples = _state(request)
    listed = sorted(batches(service, receipts), key=lambda b: b["block"])
    total, anchored = 0, []
    for b in listed:
        total += b["members"]
        anchored.append({"time": b["time"], "block": b["block"], "members": total})
    gas = [{"batch_size": b["members"], "gas_per_member": b["gas_per_member"]}
           for b in listed if b["gas_per_member"] is not None]
    return {"anchored_members": anchored, "gas_per_member": gas, "counters": samples.sample(request)}


@router.get("/v1/explorer/overview", summary="Explorer: the registry at a glance")
def get_overview(request: Request) -> JSONResponse:
    return JSONResponse(overview(service_of(request)))


@router.get("/v1/explorer/groups/{group_id}/roots", summary="Explorer: a group's root history",
            responses=error_responses(404, 422))
def get_roots(group_id: GroupId, request: Request) -> JSONResponse:
    return JSONResponse({"group_id": group_id, "roots": roots(service_of(request), group_id)})


@router.get("/v1/explorer/batches", summary="Explorer: addMembers transactions", responses=error_responses(422))
def get_batches(request: Request, limit: int = Query(MAX_BATCHES, ge=1, le=MAX_BATCHES)) -> JSONResponse:
    receipts, _ = _state(request)
    return JSONResponse({"batches": batches(service_of(request), receipts, limit)})


@router.get("/v1/explorer/anchors", summary="Explorer: the evidence log's anchors")
def get_anchors(request: Request) -> JSONResponse:
    return JSONResponse({"anchors": anchors(service_of(request))})


@router.get("/v1/explorer/charts", summary="Explorer: chart series (aggregates only)")
def get_charts(request: Request) -> JSONResponse:
    return JSONResponse(charts(service_of(request), request))
