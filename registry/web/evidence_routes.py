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

Errors are the registry's ``{"error": {"code", "message"}}`` JSON (docs/api.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from registry.evidence.admission import AdmissionRefused, ConfiguredKey, EvidenceAdmission
from registry.evidence.log import EvidenceLog, EvidenceLogError, MalformedRecord, StoredAnchor
from zk.evidence import merkle
from zk.evidence.bundle import Anchor, BundleError, build_bundle
from zk.evidence.record import RECORD_VERSION, EventType, ReasonCode, RecordError, SignedRecord, strict_json_loads

MAX_BODY = 64 * 1024
MAX_BATCH_BODY = 4 * 1024 * 1024
MAX_BATCH = 1000

AnchorsLookup = Callable[[int], StoredAnchor | None]


def _error(status: int, code: str, detail: str) -> JSONResponse:
    """The registry's error shape (docs/api.md): ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": detail}}, status_code=status)


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


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    return {status: {"description": "error: `{\"error\": {\"code\", \"message\"}}`"} for status in statuses}


def _log_error(exc: EvidenceLogError) -> JSONResponse:
    status = {"not_found": 404, "bad_signature": 422}.get(exc.code, 400)
    return _error(status, exc.code, exc.detail)


async def _body(request: Request, limit: int) -> bytes | JSONResponse:
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return _error(413, "too_large", f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _refused(exc: AdmissionRefused) -> JSONResponse:
    response = _error(exc.status, exc.code, exc.detail)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


#: A relay key in a path: an Ethereum address.
RELAY_ADDRESS = Path(pattern="^0x[0-9a-fA-F]{40}$", description="A relay's evidence signing address.")


def evidence_router(
    log: EvidenceLog,
    anchors_lookup: AnchorsLookup | None = None,
    *,
    admission: EvidenceAdmission,
    operator: Callable[..., None] | None = None,
) -> APIRouter:
    """The evidence routes over ``log``. ``anchors_lookup(index)`` returns the first
    anchor whose tree contains entry ``index`` (default: the log's ``anchors`` table).
    ``admission`` decides who may append; ``operator`` (a FastAPI dependency checking the
    operator token) guards the relay-key routes, which are absent without it."""
    lookup = anchors_lookup or log.anchor_covering
    router = APIRouter()

    @router.get("/v1/evidence/relays")
    def get_relays() -> Response:
        return JSONResponse({"relays": admission.relays()})

    if operator is not None:

        @router.put(
            "/v1/evidence/relays/{address}",
            status_code=201,
            responses=_documented(200, 401, 403, 422),
            dependencies=[Depends(operator)],
        )
        def put_relay(address: str = RELAY_ADDRESS) -> Response:
            try:
                created = admission.add(address)
            except ValueError as exc:
                return _error(422, "bad_address", str(exc))
            return JSONResponse({"relays": admission.relays(), "created": created}, status_code=201 if created else 200)

        @router.delete(
            "/v1/evidence/relays/{address}",
            responses=_documented(401, 403, 404, 409, 422),
            dependencies=[Depends(operator)],
        )
        def delete_relay(address: str = RELAY_ADDRESS) -> Response:
            try:
                removed = admission.remove(address)
            except ConfiguredKey as exc:
                return _error(409, "configured", str(exc))
            except ValueError as exc:
                return _error(422, "bad_address", str(exc))
            if not removed:
                return _error(404, "not_found", "no such operator-added relay key")
            return JSONResponse({"relays": admission.relays()})

    @router.post(
        "/v1/evidence",
        status_code=201,
        responses=_documented(200, 400, 403, 413, 422, 429),
        openapi_extra=_body_schema(_SIGNED_RECORD),
    )
    async def post_evidence(request: Request) -> Response:
        body = await _body(request, MAX_BODY)
        if isinstance(body, JSONResponse):
            return body
        try:
            signed = SignedRecord.from_json(body)
        except RecordError as exc:
            return _error(400, "malformed_record", str(exc))
        try:
            await run_in_threadpool(admission.admit, [signed], log.known_hashes)
        except AdmissionRefused as exc:
            return _refused(exc)
        try:
            [(index, evidence_id, created)] = await run_in_threadpool(log.append_detailed, [signed])
        except EvidenceLogError as exc:
            return _log_error(exc)
        checkpoint = await run_in_threadpool(log.checkpoint)
        return JSONResponse(
            {"index": index, "evidence_id": evidence_id, "checkpoint": checkpoint, "created": created},
            status_code=201 if created else 200,
        )

    @router.post(
        "/v1/evidence/batch",
        status_code=201,
        responses=_documented(400, 403, 413, 422, 429),
        openapi_extra=_body_schema({"type": "array", "maxItems": MAX_BATCH, "items": _SIGNED_RECORD}),
    )
    async def post_batch(request: Request) -> Response:
        body = await _body(request, MAX_BATCH_BODY)
        if isinstance(body, JSONResponse):
            return body
        try:
            data = strict_json_loads(body, RecordError)
            if not isinstance(data, dict) or set(data) != {"records"} or not isinstance(data["records"], list):
                raise RecordError('a batch is {"records": [...]}')
            if not 1 <= len(data["records"]) <= MAX_BATCH:
                raise RecordError(f"a batch has 1 to {MAX_BATCH} records")
            records = [SignedRecord.from_dict(r) for r in data["records"]]
        except RecordError as exc:
            return _error(400, "malformed_record", str(exc))
        try:
            await run_in_threadpool(admission.admit, records, log.known_hashes)
        except AdmissionRefused as exc:
            return _refused(exc)
        try:
            results = await run_in_threadpool(log.append_many, records)
        except EvidenceLogError as exc:
            return _log_error(exc)
        checkpoint = await run_in_threadpool(log.checkpoint)
        return JSONResponse(
            {"results": [{"index": i, "evidence_id": e} for i, e in results], "checkpoint": checkpoint},
            status_code=201,
        )

    @router.get("/v1/log/checkpoint", response_class=PlainTextResponse)
    def get_checkpoint() -> Response:
        return PlainTextResponse(log.checkpoint())

    @router.get("/v1/log/consistency", responses=_documented(404))
    def get_consistency(first: int = Query(alias="from", ge=0), second: int = Query(alias="to", ge=0)) -> Response:
        try:
            proof = log.consistency(first, second)
        except merkle.ProofError as exc:
            # e.g. a size beyond the log, or from > to: there is no such proof to serve
            return _error(404, "bad_tree_size", str(exc))
        return JSONResponse({"from": first, "to": second, "proof": [h.hex() for h in proof]})

    @router.get("/v1/evidence/{evidence_id}", responses=_documented(400, 404))
    def get_evidence(evidence_id: str = EVIDENCE_ID) -> Response:
        try:
            entry = log.get(evidence_id)
        except EvidenceLogError as exc:
            return _log_error(exc)
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

    @router.get("/v1/evidence/{evidence_id}/bundle", responses=_documented(400, 404, 409))
    def get_bundle(
        evidence_id: str = EVIDENCE_ID,
        checkpoint: str = Query("anchored", pattern="^(anchored|latest)$"),
    ) -> Response:
        if checkpoint not in ("anchored", "latest"):
            return _error(400, "bad_request", "checkpoint is 'anchored' or 'latest'")
        try:
            entry = log.get(evidence_id)
        except EvidenceLogError as exc:
            return _log_error(exc)
        stored = log.latest_anchor()
        if stored is None or stored.tree_size <= entry.index:
            return _error(409, "not_anchored", "the record is not covered by an anchor yet")
        anchor = Anchor(stored.chain_id, stored.contract, stored.tx_hash, stored.block_number,
                        stored.block_time, stored.tree_size, stored.root_hash)
        size = stored.tree_size if checkpoint == "anchored" else log.size
        try:
            bundle = build_bundle([(entry.signed, entry.index)], log, log.checkpoint(size), anchor,
                                  log.verifier.vkey())
        except (BundleError, MalformedRecord) as exc:  # the store disagrees with itself
            return _error(500, "inconsistent_store", str(exc))
        return Response(json.dumps(bundle.to_dict(), indent=1), media_type="application/json")

    return router
