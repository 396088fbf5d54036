"""A group's admission policy and its invite codes (operator; docs/admission.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from registry.web.auth import operator
from registry.web.errors import ApiRoute, error_responses
from registry.web.models import AdmissionModel, GroupId, GroupModel, InvitesRequest, InvitesResponse, group_dict
from registry.web.routes import service_of

router = APIRouter(route_class=ApiRoute, tags=["operator"], dependencies=[Depends(operator)])


@router.put(
    "/v1/groups/{group_id}/admission",
    response_model=GroupModel,
    responses=error_responses(401, 403, 404, 413, 422),
    summary="Set a group's admission policy and whether it is a send group (operator)",
)
def set_admission(group_id: GroupId, body: AdmissionModel, request: Request) -> JSONResponse:
    from registry.service.admission import admission_from_json

    service = service_of(request)
    service.set_admission(admission_from_json(group_id, body.model_dump()))
    return JSONResponse(group_dict(service.group_info(group_id)))


@router.post(
    "/v1/groups/{group_id}/invites",
    status_code=201,
    response_model=InvitesResponse,
    responses=error_responses(401, 403, 404, 413, 422),
    summary="Mint single-use invite codes of an `invite` group (operator; only their hashes are kept)",
)
def create_invites(group_id: GroupId, body: InvitesRequest, request: Request) -> JSONResponse:
    codes = service_of(request).create_invites(group_id, body.count, float(body.expires_at))
    return JSONResponse({"group_id": group_id, "invites": codes, "expires_at": body.expires_at}, status_code=201)
