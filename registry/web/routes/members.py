"""Members: register commitments, read pages of leaves, a registration's status and a
member's Merkle proof (docs/api.md "Registration", "Merkle proof")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from registry.errors import RegistryError
from registry.storage.access_log import client_ip
from registry.web.auth import maybe_operator
from registry.web.errors import ApiRoute, error_responses
from registry.web.models import (
    MAX_MEMBERS_PAGE,
    CommitmentPath,
    GroupId,
    MemberStatusModel,
    MembersPageModel,
    MerkleProofResponse,
    RegisterRequest,
    RegisterResponse,
    parse_commitment,
)
from registry.web.rate_limit import retry_after
from registry.web.routes import service_of

if TYPE_CHECKING:
    from registry.service.facade import MemberStatus

router = APIRouter(route_class=ApiRoute, tags=["members"])


def _charge(request: Request, count: int) -> None:
    """Counts a registration per commitment: the request paid one token in RateLimitMiddleware."""
    limiter = request.app.state.rate_limiter
    wait = limiter.take("registration", client_ip(request.scope), count, paid=1)
    if wait == float("inf"):
        burst = limiter.burst("registration")
        raise RegistryError("too_large", f"more than {burst} commitments from one client at once")
    if wait > 0:
        raise RegistryError("rate_limited", "too many registrations from this address", headers={"Retry-After": retry_after(wait)})


def _enqueue(request: Request, group_id: int, values: list[int], body: RegisterRequest, as_operator: bool) -> list[MemberStatus]:
    service = service_of(request)
    try:
        if as_operator:  # the operator (an account service writing an admission group) bypasses the policy
            return service.register(group_id, values)
        proof = None if body.admission_proof is None else body.admission_proof.model_dump()
        return service.admit(group_id, values, admission_proof=proof, invite=body.invite)
    except RegistryError as exc:
        if exc.code == "backlog_full":  # it clears as batches land: tell clients when to come back
            exc.headers = {"Retry-After": str(max(1, int(request.app.state.settings.batch_interval * 5)))}
        raise


@router.post(
    "/v1/groups/{group_id}/members",
    status_code=202,
    response_model=RegisterResponse,
    responses=error_responses(401, 403, 404, 409, 413, 422, 503),
    summary="Register commitments under the group's admission policy (durably queued, then anchored in batches)",
)
def register(
    group_id: GroupId, body: RegisterRequest, request: Request, as_operator: bool = Depends(maybe_operator)  # noqa: B008
) -> JSONResponse:
    values = [parse_commitment(c, f"commitments[{i}]") for i, c in enumerate(body.commitments)]
    if not as_operator:
        _charge(request, len(values))
    statuses = _enqueue(request, group_id, values, body, as_operator)
    request.app.state.traffic.registrations.inc(len(statuses))
    return JSONResponse({"members": [s.to_dict() for s in statuses]}, status_code=202)


@router.get(
    "/v1/groups/{group_id}/members",
    response_model=MembersPageModel,
    responses=error_responses(404, 422),
    summary="A page of the group's leaves in tree order (public on the ledger): build the tree and prove locally",
)
def members_page(
    group_id: GroupId,
    request: Request,
    start: Annotated[int, Query(ge=0, le=2**32, description="First leaf index.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_MEMBERS_PAGE, description="Most leaves returned.")] = MAX_MEMBERS_PAGE,
) -> JSONResponse:
    return JSONResponse(service_of(request).members_page(group_id, start, limit))


@router.get(
    "/v1/groups/{group_id}/members/{commitment}",
    response_model=MemberStatusModel,
    responses=error_responses(404, 422),
    summary="Registration status of a commitment: pending, included or final",
)
def member_status(group_id: GroupId, commitment: CommitmentPath, request: Request) -> JSONResponse:
    return JSONResponse(service_of(request).member_status(group_id, parse_commitment(commitment)).to_dict())


@router.get(
    "/v1/groups/{group_id}/proofs/{commitment}",
    response_model=MerkleProofResponse,
    responses=error_responses(404, 409, 422),
    summary="Merkle proof of a member against the group's current indexed root",
)
async def merkle_proof(group_id: GroupId, commitment: CommitmentPath, request: Request) -> JSONResponse:
    service = service_of(request)
    value = parse_commitment(commitment)
    # The hot read path: a proof from the in-memory tree takes ~20 us, far less than a
    # hop to the thread pool. Serve it on the event loop when the index lock is free
    # (an RLock: the service takes it again in this thread); while the indexer holds it
    # (applying new blocks), wait for it in the thread pool, not on the event loop.
    lock = service.index.lock
    if lock.acquire(blocking=False):
        try:
            proof = service.merkle_proof(group_id, value)
        finally:
            lock.release()
    else:
        proof = await run_in_threadpool(service.merkle_proof, group_id, value)
    return JSONResponse({"group_id": group_id, "merkle_proof": proof.to_dict()})
