"""HTTP routes of the evidence log (FastAPI router; the main app mounts it).

- ``POST /v1/evidence``: a SignedRecord JSON -> 201 ``{index, evidence_id, checkpoint}``
  after the durable append (200 with the existing index for a record already logged);
  400 ``malformed_record``, 422 ``bad_signature``, 413 ``too_large``.
- ``POST /v1/evidence/batch``: ``{"records": [SignedRecord, ...]}`` (at most 1000),
  appended in one transaction, all or nothing -> 201 ``{results, checkpoint}``.
- ``GET /v1/evidence/{id}``: record, index, tlog-proof against the latest checkpoint,
  that checkpoint and the covering anchor (null until anchored).
- ``GET /v1/evidence/{id}/bundle[?checkpoint=anchored|latest]``: a
  :class:`zk.evidence.bundle.EvidenceBundle` against the latest anchored checkpoint
  (default) or the latest checkpoint; 409 ``not_anchored`` before the record is anchored.
- ``GET /v1/evidence/relays``: the relay keys allowed to append;
  ``PUT``/``DELETE /v1/evidence/relays/{address}`` (operator) add or remove one.
- ``GET /v1/log/checkpoint``: the signed checkpoint note (text/plain).
- ``GET /v1/log/consistency?from=A&to=B``: ``{"from", "to", "proof": [hex...]}``.

Appends pass :class:`registry.evidence.admission.EvidenceAdmission` first (known relay
key, chain id, event time, per-relay rate limit): 403 ``unknown_signer``, 422
``wrong_chain`` / ``event_time_in_future`` / ``event_time_too_old``, 429 ``rate_limited``
with ``Retry-After``.

Errors are :class:`registry.errors.RegistryError`, answered as the registry's
``{"error": {"code", "message"}}`` JSON with the status of its one table (docs/api.md),
also on an app of its own (the routes are :class:`registry.web.errors.ApiRoute`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from registry.errors import RegistryError
from registry.evidence.admission import ConfiguredKey, EvidenceAdmission
from registry.evidence.log import EvidenceLog, EvidenceLogError, MalformedRecord, StoredAnchor, check_records
from registry.evidence.verify_workers import VerifyWorkers
from registry.web.errors import ApiRoute, error_responses
from zk import strict_json
from zk.evidence import merkle
from zk.evidence.bundle import Anchor, BundleError, build_bundle
from zk.evidence.record import RECORD_VERSION, EventType, ReasonCode, RecordError, SignedRecord

MAX_BODY = 64 * 1024
MAX_BATCH_BODY = 4 * 1024 * 1024
MAX_BATCH = 1000

AnchorsLookup = Callable[[int], StoredAnchor | None]


_HEX32 = "^0x[0-9a-f]{64}$"
_SIGNED_RECORD: dict[str, Any] = {
    "type": "object",
    "required": ["record", "signature"],
    "additionalProperties": False,
    "properties": {
        "record": {
            "type": "object",
            "description": "An evidence record (docs/evidence.md); its EIP-712 signature must recover to `issuer`.",
            "required": ["blobDigest", "chainId", "event", "eventTime", "issuer", "links", "region", "version"],
            "properties": {
                "blobDigest": {"type": "string", "pattern": _HEX32},
                "chainId": {"type": "integer", "minimum": 1},
                "event": {"type": "string", "enum": [e.value for e in EventType]},
                "eventTime": {"type": "integer", "minimum": 0},
                "issuer": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
                "links": {"type": "array", "items": {"type": "string", "pattern": _HEX32}},
                "reason": {"type": "string", "enum": [r.value for r in ReasonCode]},
                "region": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}$"},
                "version": {"type": "integer", "enum": [RECORD_VERSION]},
            },
        },
        "signature": {"type": "string", "pattern": "^0x[0-9a-f]{130}$"},
    },
}


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that parses its body itself (strictly)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


#: An evidence id: the record hash, 64 lower-case hex digits (docs/evidence.md).
EVIDENCE_ID = Path(pattern="^[0-9a-f]{64}$", description="Evidence id (the record hash, hex).")


def _log_error(exc: EvidenceLogError) -> RegistryError:
    return RegistryError(exc.code, exc.detail)


async def _body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RegistryError("too_large", f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _admit_and_append(
    log: EvidenceLog,
    admission: EvidenceAdmission,
    records: list[SignedRecord],
    check: Callable[[Sequence[SignedRecord]], list[bytes]] = check_records,
) -> list[tuple[int, str, bool]]:
    """Admit and append ``records`` (all or nothing): (index, evidence id, created) each.
    Each signature is checked once (``check``, by the admission), and the log appends the
    hashes it checked."""
    hashes = admission.admit(records, log.known_hashes, check=check)  # AdmissionRefused: a RegistryError
    try:
        return log.append_detailed(records, verified=hashes)
    except EvidenceLogError as exc:
        raise _log_error(exc) from None


async def _append(log: EvidenceLog, admission: EvidenceAdmission, records: list[SignedRecord]) -> list[tuple[int, str, bool]]:
    """:func:`_admit_and_append` in the thread pool (one hop)."""
    return await run_in_threadpool(_admit_and_append, log, admission, records)


def _append_batch(
    log: EvidenceLog, admission: EvidenceAdmission, body: bytes, workers: VerifyWorkers | None
) -> list[tuple[int, str, bool]]:
    """Parse, admit and append a batch body (in the thread pool). A large batch is parsed
    and verified in ``workers``; if any record fails there, the batch is parsed and
    checked here, which names the error exactly as without workers."""
    items = _batch_items(body)
    # Only records that name trusted issuers are worth the workers' CPU: anyone may post,
    # and the in-process path refuses an unknown signer before checking any signature.
    fast = workers.parse_and_check(items) if workers is not None and _trusted_issuers(items, admission) else None
    if fast is not None:
        records, hashes = fast
        return _admit_and_append(log, admission, records, lambda _: hashes)
    try:
        records = [SignedRecord.from_dict(r) for r in items]
    except RecordError as exc:
        raise RegistryError("malformed_record", str(exc)) from None
    return _admit_and_append(log, admission, records)


def _trusted_issuers(items: Sequence[Any], admission: EvidenceAdmission) -> bool:
    """Whether every JSON record names a trusted issuer (compared case-insensitively; the
    parse checks the address itself)."""
    trusted = {a.lower() for a in admission.trusted()}
    for item in items:
        record = item.get("record") if isinstance(item, dict) else None
        issuer = record.get("issuer") if isinstance(record, dict) else None
        if not isinstance(issuer, str) or issuer.lower() not in trusted:
            return False
    return True


def _batch_items(body: bytes) -> list[Any]:
    """The JSON records of a batch body, not yet parsed as records."""
    try:
        data = strict_json.loads(body, floats=False, error=RecordError)
        if not isinstance(data, dict) or set(data) != {"records"} or not isinstance(data["records"], list):
            raise RecordError('a batch is {"records": [...]}')
        if not 1 <= len(data["records"]) <= MAX_BATCH:
            raise RecordError(f"a batch has 1 to {MAX_BATCH} records")
        return list(data["records"])
    except RecordError as exc:
        raise RegistryError("malformed_record", str(exc)) from None



#: A relay key in a path: an Ethereum address.
RELAY_ADDRESS = Path(pattern="^0x[0-9a-fA-F]{40}$", description="A relay's evidence signing address.")


def evidence_router(
    log: EvidenceLog,
    anchors_lookup: AnchorsLookup | None = None,
    *,
    admission: EvidenceAdmission,
    operator: Callable[..., None] | None = None,
    workers: VerifyWorkers | None = None,
) -> APIRouter:
    """The evidence routes over ``log``. ``anchors_lookup(index)`` returns the first
    anchor whose tree contains entry ``index`` (default: the log's ``anchors`` table).
    ``admission`` decides who may append; ``operator`` (a FastAPI dependency checking the
    operator token) guards the relay-key routes, which are absent without it.
    ``workers``: processes that check the signatures of large batches (the caller closes
    them); None checks them in the request's thread."""
    router = APIRouter(route_class=ApiRoute)
    _relay_key_routes(router, admission, operator)
    _append_routes(router, log, admission, workers)
    _read_routes(router, log, anchors_lookup or log.anchor_covering)
    return router


def _relay_key_routes(router: APIRouter, admission: EvidenceAdmission, operator: Callable[..., None] | None) -> None:
    @router.get("/v1/evidence/relays")
    def get_relays() -> Response:
        return JSONResponse({"relays": admission.relays()})

    if operator is None:
        return

    @router.put(
        "/v1/evidence/relays/{address}",
        status_code=201,
        responses={200: {"description": "The key was listed already (`created` false)."}, **error_responses(401, 403, 422)},
        dependencies=[Depends(operator)],
    )
    def put_relay(address: str = RELAY_ADDRESS) -> Response:
        with _relay_key_errors():
            created = admission.add(address)
        return JSONResponse({"relays": admission.relays(), "created": created}, status_code=201 if created else 200)

    @router.delete(
        "/v1/evidence/relays/{address}",
        responses=error_responses(401, 403, 404, 409, 422),
        dependencies=[Depends(operator)],
    )
    def delete_relay(address: str = RELAY_ADDRESS) -> Response:
        with _relay_key_errors():
            removed = admission.remove(address)
        if not removed:
            raise RegistryError("not_found", "no such operator-added relay key")
        return JSONResponse({"relays": admission.relays()})


@contextmanager
def _relay_key_errors() -> Iterator[None]:
    """The admission's refusals of a relay key as API errors: ``configured`` (a key from
    the settings, which the API cannot remove) and ``bad_address``."""
    try:
        yield
    except ConfiguredKey as exc:
        raise RegistryError("configured", str(exc)) from None
    except ValueError as exc:
        raise RegistryError("bad_address", str(exc)) from None


def _append_routes(router: APIRouter, log: EvidenceLog, admission: EvidenceAdmission, workers: VerifyWorkers | None) -> None:
    @router.post(
        "/v1/evidence",
        status_code=201,
        responses={200: {"description": "Already in the log (`created` false)."}, **error_responses(400, 403, 413, 422, 429)},
        openapi_extra=_body_schema(_SIGNED_RECORD),
    )
    async def post_evidence(request: Request) -> Response:
        body = await _body(request, MAX_BODY)
        try:
            signed = SignedRecord.from_json(body)
        except RecordError as exc:
            raise RegistryError("malformed_record", str(exc)) from None
        [(index, evidence_id, created)] = await _append(log, admission, [signed])
        checkpoint = await run_in_threadpool(log.checkpoint)
        return JSONResponse(
            {"index": index, "evidence_id": evidence_id, "checkpoint": checkpoint, "created": created},
            status_code=201 if created else 200,
        )

    @router.post(
        "/v1/evidence/batch",
        status_code=201,
        responses=error_responses(400, 403, 413, 422, 429),
        openapi_extra=_body_schema({"type": "array", "maxItems": MAX_BATCH, "items": _SIGNED_RECORD}),
    )
    async def post_batch(request: Request) -> Response:
        body = await _body(request, MAX_BATCH_BODY)
        results = await run_in_threadpool(_append_batch, log, admission, body, workers)
        checkpoint = await run_in_threadpool(log.checkpoint)
        return JSONResponse(
            {"results": [{"index": i, "evidence_id": e} for i, e, _ in results], "checkpoint": checkpoint},
            status_code=201,
        )


def _read_routes(router: APIRouter, log: EvidenceLog, lookup: AnchorsLookup) -> None:
    @router.get("/v1/log/checkpoint", response_class=PlainTextResponse)
    def get_checkpoint() -> Response:
        return PlainTextResponse(log.checkpoint())

    @router.get("/v1/log/consistency", responses=error_responses(404))
    def get_consistency(first: int = Query(alias="from", ge=0), second: int = Query(alias="to", ge=0)) -> Response:
        try:
            proof = log.consistency(first, second)
        except merkle.ProofError as exc:
            # e.g. a size beyond the log, or from > to: there is no such proof to serve
            raise RegistryError("bad_tree_size", str(exc)) from None
        return JSONResponse({"from": first, "to": second, "proof": [h.hex() for h in proof]})

    @router.get("/v1/evidence/{evidence_id}", responses=error_responses(400, 404))
    def get_evidence(evidence_id: str = EVIDENCE_ID) -> Response:
        try:
            entry = log.get(evidence_id)
        except EvidenceLogError as exc:
            raise _log_error(exc) from None
        size = log.size
        anchor = lookup(entry.index)
        out: dict[str, Any] = {
            "evidence_id": entry.evidence_id,
            "index": entry.index,
            **entry.signed.to_dict(),
            "tlogProof": log.tlog_proof(entry.index, size).format(),
            "checkpoint": log.checkpoint(size),
            "anchor": None if anchor is None else anchor.to_dict(),
        }
        return JSONResponse(out)

    @router.get("/v1/evidence/{evidence_id}/bundle", responses=error_responses(400, 404, 409))
    def get_bundle(
        evidence_id: str = EVIDENCE_ID,
        checkpoint: str = Query("anchored", pattern="^(anchored|latest)$"),
    ) -> Response:
        return _bundle(log, evidence_id, checkpoint)


def _bundle(log: EvidenceLog, evidence_id: str, checkpoint: str) -> Response:
    """The evidence bundle of a record against the latest anchored (or latest) checkpoint."""
    try:
        entry = log.get(evidence_id)
    except EvidenceLogError as exc:
        raise _log_error(exc) from None
    stored = log.latest_anchor()
    if stored is None or stored.tree_size <= entry.index:
        raise RegistryError("not_anchored", "the record is not covered by an anchor yet")
    anchor = Anchor(stored.chain_id, stored.contract, stored.tx_hash, stored.block_number,
                    stored.block_time, stored.tree_size, stored.root_hash)
    size = stored.tree_size if checkpoint == "anchored" else log.size
    try:
        bundle = build_bundle([(entry.signed, entry.index)], log, log.checkpoint(size), anchor,
                              log.verifier.vkey())
    except (BundleError, MalformedRecord) as exc:  # the store disagrees with itself
        raise RegistryError("inconsistent_store", str(exc)) from None
    return Response(json.dumps(bundle.to_dict(), indent=1), media_type="application/json")
