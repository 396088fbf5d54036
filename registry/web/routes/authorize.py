"""``POST /v1/authorize``: check a send authorization (docs/authorization.md).

200 with the decision when authorized; a refusal carries the decision fields *and*
``{"error": {"code": <reason>, "message"}}`` with the status of
:data:`registry.errors.REFUSAL_STATUS`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from registry.errors import RegistryError, refusal_status
from registry.service.authorization import Decision, Reason
from registry.web.errors import ApiRoute, error_responses
from registry.web.models import AuthorizeRequest, DecisionModel, ErrorResponse, RefusalModel
from registry.web.routes import service_of

router = APIRouter(route_class=ApiRoute, tags=["authorization"])

REFUSAL_MESSAGE: dict[Reason, str] = {
    Reason.MALFORMED: "the proof is not a well-formed Semaphore proof (points must be on their curves)",
    Reason.BAD_SCOPE: "the scope is not a relay-epoch scope",
    Reason.SCOPE_VERSION_UNSUPPORTED: "the scope is an LZE1 relay-epoch scope; make the proof again over an LZE2 scope (docs/authorization.md)",
    Reason.WRONG_REGISTRY: "the scope names another registry deployment (chain id, registry contract)",
    Reason.WRONG_GROUP: "the scope names another group",
    Reason.UNKNOWN_GROUP: "no such group",
    Reason.GROUP_NOT_SERVED: "this group is not a send group of this registry's operator",
    Reason.WRONG_EPOCH: "the scope's epoch is not the current one",
    Reason.SLOT_OUT_OF_RANGE: "the scope's slot is not below the group's message limit",
    Reason.MESSAGE_MISMATCH: "the proof's message is not the blob digest",
    Reason.UNKNOWN_ROOT: "the Merkle root was never a root of this group",
    Reason.EXPIRED_ROOT: "the Merkle root was superseded longer ago than the group's root window",
    Reason.INVALID_PROOF: "the proof does not verify",
    Reason.NULLIFIER_REUSED: "this nullifier was already used (slot taken in this epoch)",
    Reason.INDEX_STALE: "the registry's chain index lags the ledger too far to judge the root; try again later",
}



@router.post(
    "/v1/authorize",
    response_model=DecisionModel,
    responses={
        **error_responses(413),
        403: {"model": RefusalModel, "description": "Refused: the `reason` (and `error.code`) says why."},
        404: {"model": RefusalModel, "description": "Refused: `unknown_group`."},
        409: {"model": RefusalModel, "description": "Refused: `nullifier_reused`."},
        422: {"model": ErrorResponse, "description": "Malformed request or proof (`malformed`)."},
        503: {"model": RefusalModel, "description": "Refused for now: `index_stale` (the index lags the chain)."},
    },
    summary="Check a send authorization (docs/authorization.md); 200 only when authorized",
)
def authorize(body: AuthorizeRequest, request: Request) -> JSONResponse:
    digest = bytes.fromhex(body.blob_digest.removeprefix("0x"))
    decision: Decision = service_of(request).authorize(body.proof.model_dump(), body.group_id, digest)
    request.app.state.metrics.authorizations.labels(decision.reason.value).inc()
    data = decision.to_dict()
    if not decision.authorized:
        reason = decision.reason.value
        raise RegistryError(reason, REFUSAL_MESSAGE.get(decision.reason, "refused"), refusal_status(reason), fields=data)
    return JSONResponse(data)
