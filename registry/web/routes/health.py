"""The service's state: ``GET /v1/health`` and the Prometheus ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from registry.web.errors import ApiRoute
from registry.web.models import HealthModel, jsonable
from registry.web.routes import service_of

router = APIRouter(route_class=ApiRoute, tags=["service"])


@router.get("/v1/health", response_model=HealthModel, summary="Service and ledger state")
def health(request: Request) -> JSONResponse:
    return JSONResponse(jsonable(service_of(request).health()))


@router.get(
    "/metrics",
    summary="Prometheus metrics (no per-user labels)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
