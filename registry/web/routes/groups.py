"""Groups and roots: create (operator), list, read; which group a root belongs to."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from registry.web.auth import operator
from registry.web.errors import ApiRoute, error_responses
from registry.web.models import (
    CreateGroupRequest,
    GroupId,
    GroupModel,
    GroupsResponse,
    RootInfoModel,
    RootPath,
    group_dict,
    jsonable,
    parse_field,
)
from registry.web.routes import service_of

router = APIRouter(route_class=ApiRoute)


@router.post(
    "/v1/groups",
    status_code=201,
    response_model=GroupModel,
    responses=error_responses(401, 403, 413, 422, 502, 503),
    tags=["operator"],
    summary="Create a group (operator)",
    dependencies=[Depends(operator)],
)
def create_group(request: Request, body: CreateGroupRequest | None = None) -> JSONResponse:
    service = service_of(request)
    admission = None if body is None or body.admission is None else body.admission.model_dump()
    group_id = service.create_group(body.root_window if body is not None else None, admission)
    return JSONResponse(group_dict(service.group_info(group_id)), status_code=201)


@router.get("/v1/groups", response_model=GroupsResponse, tags=["groups"], summary="List groups")
def list_groups(request: Request) -> JSONResponse:
    return JSONResponse({"groups": [group_dict(g) for g in service_of(request).groups()]})


def _get_one(path: str, model: type[BaseModel], summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A read of one group or root: 404 when there is none, 422 when the path is malformed."""
    return router.get(path, response_model=model, responses=error_responses(404, 422), tags=["groups"], summary=summary)


@_get_one("/v1/groups/{group_id}", GroupModel, "A group: root, size, depth and its authorization parameters")
def get_group(group_id: GroupId, request: Request) -> JSONResponse:
    return JSONResponse(group_dict(service_of(request).group_info(group_id)))


@_get_one("/v1/roots/{root}", RootInfoModel, "Which group a root belongs to and whether it is still valid")
def root_info(root: RootPath, request: Request) -> JSONResponse:
    value = parse_field(root, "root", "malformed")
    info = jsonable(service_of(request).root_info(value))
    info["root"] = str(value)
    return JSONResponse(info)
