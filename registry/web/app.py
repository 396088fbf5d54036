"""The registry's HTTP API: a thin FastAPI layer over :class:`registry.service.facade.RegistryService`.

The app factory assembles the pieces of :mod:`registry.web`: the wire models
(:mod:`~registry.web.models`), the error contract (:mod:`~registry.web.errors`, over
:mod:`registry.errors`), the middleware (:mod:`~registry.web.middleware`), the per-IP
limits (:mod:`~registry.web.rate_limit`), the metrics (:mod:`~registry.web.metrics`) and
the routes (:mod:`registry.web.routes`, one ``APIRouter`` per concern).

It validates and maps; the service decides. Every error is JSON
``{"error": {"code": ..., "message": ...}}`` with a 4xx status for bad input (never a
5xx), request bodies larger than their route's limit are refused with 413 before they are
parsed, and operator endpoints need ``Authorization: Bearer <settings.operator_token>``
(disabled when no token is configured). The endpoints, codes and privacy rules are in
docs/api.md; the authorization checks in docs/authorization.md. The contract is the
OpenAPI document at ``/openapi.json``; no HTML documentation page is served (Swagger UI
and ReDoc would load their scripts from a CDN).

Privacy: nothing here logs a path, body, commitment, root, proof or nullifier. The only
request record is the connection log (:mod:`registry.storage.access_log`: hour and IP); metrics
are labelled by route *template*, method, status and refusal reason, never by value.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI

from registry.service.authorization import MAX_GROUP_ID
from registry.service.settings import Settings
from registry.storage.database import open_store_database
from registry.storage.access_log import FILE_NAME as ACCESS_LOG_FILE
from registry.storage.access_log import AccessLog, AccessLogMiddleware, Scope
from registry.web.auth import operator
from registry.web.errors import ApiRoute, error_responses, install_error_handlers
from registry.web.metrics import Metrics, TrafficMetrics
from registry.web.middleware import BodyLimitMiddleware, ErrorGuardMiddleware, MetricsMiddleware
from registry.web.models import MEMBERS_MAX_BODY, UINT64_MAX
from registry.web.rate_limit import RateLimitMiddleware, bearer_exempt, registry_limiter, registry_route_class
from registry.web.explorer import mount as mount_explorer
from registry.web.routes import admission, authorize, explorer, groups, health, members, nullifiers
from zk import strict_json

if TYPE_CHECKING:
    from registry.service.facade import RegistryService

API_VERSION = "1"
_MEMBERS_PATH = re.compile(r"/v1/groups/[^/]+/members")
_DESCRIPTION = (
    "ZK-ID registry of the letro messenger (Semaphore v4 groups anchored on an EVM ledger). "
    "Errors are `{\"error\": {\"code\", \"message\"}}`; field elements are canonical decimal "
    "strings; a body over its route's size limit gets 413 `too_large` (docs/api.md); "
    "bodies are parsed strictly (a repeated key: 400 `duplicate_key`; nesting deeper "
    f"than {strict_json.MAX_DEPTH}: 400 `too_deep`). "
    "The registry logs connection time and client IP only (see docs/api.md)."
)


def create_app(service: RegistryService, settings: Settings) -> FastAPI:
    """The ASGI app. The caller owns ``service`` (``start``/``stop``); the app owns its
    connection log (opened here, flushed and purged in the background while it runs)."""
    # Not durable (a log of connection times): no fsync per commit on SQLite; on
    # PostgreSQL the replicas' counts add up in one table (schema zkid_access).
    access_log = AccessLog(
        open_store_database(
            settings.database, settings.data_dir, ACCESS_LOG_FILE, durable=False, pool_size=settings.database_pool_size
        ),
        settings.access_log_hours,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access_log.start()
        try:
            yield
        finally:
            access_log.close()
            workers = getattr(app.state, "evidence_workers", None)
            if workers is not None:
                workers.close()

    app = FastAPI(
        title="letro-zkid registry",
        version=API_VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        # Every route is under the per-IP limits (docs/api.md "Limits per client IP").
        responses=error_responses(429),
        docs_url=None,  # /openapi.json is the contract; the HTML pages would need a CDN
        redoc_url=None,
    )
    app.router.route_class = ApiRoute
    _customize_openapi(app)
    install_error_handlers(app)
    token = settings.operator_token.get_secret_value() if settings.operator_token is not None else None
    metrics = Metrics(service)
    limiter = registry_limiter(settings)  # per-IP limits (registry/web/rate_limit.py, docs/api.md)
    traffic = TrafficMetrics(metrics.registry, service, limiter, settings.spend_per_hour)
    app.state.access_log = access_log
    app.state.metrics = metrics
    app.state.traffic = traffic
    app.state.rate_limiter = limiter
    app.state.service = service
    app.state.settings = settings
    app.state.operator_token = token
    for router in (groups.router, admission.router, members.router, authorize.router, nullifiers.router, health.router):
        app.include_router(router)
    own_limits = _mount_evidence(app, service, settings)
    app.include_router(explorer.router)  # read-only JSON of the explorer pages (docs/explorer.md)
    mount_explorer(app)

    # Outermost first at run time: connection log, metrics, refusal counts, per-IP limit
    # (before any body is read), error guard, body limit.
    app.add_middleware(BodyLimitMiddleware, limit=_body_limit(settings, own_limits), timeout=settings.body_timeout)
    app.add_middleware(ErrorGuardMiddleware)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, classify=registry_route_class, exempt=bearer_exempt(token))
    app.add_middleware(MetricsMiddleware, metrics=metrics, traffic=traffic)
    app.add_middleware(AccessLogMiddleware, log=access_log)
    return app


def _mount_evidence(app: FastAPI, service: RegistryService, settings: Settings) -> dict[str, int]:
    """Mounts the delivery-evidence log's routes (docs/evidence.md) when the service keeps
    one; returns their body limits by path."""
    evidence = service.evidence
    if evidence is None:
        return {}
    from registry.evidence.admission import EvidenceAdmission
    from registry.evidence.verify_workers import VerifyWorkers
    from registry.web.routes.evidence import MAX_BATCH_BODY, evidence_router
    from registry.web.routes.evidence import MAX_BODY as EVIDENCE_MAX_BODY

    admission = EvidenceAdmission(
        service.manifest.chain_id,
        settings.relay_keys,
        evidence,
        max_skew=settings.evidence_max_skew,
        max_age=settings.evidence_max_age,
        rate=settings.evidence_rate,
        burst=settings.evidence_burst,
        clock=service.clock,
    )
    app.state.evidence_admission = admission
    # Large batches parsed and verified in worker processes (started by the first such
    # batch, closed with the app's lifespan).
    app.state.evidence_workers = workers = VerifyWorkers()
    app.include_router(evidence_router(evidence, admission=admission, operator=operator, workers=workers), tags=["evidence"])
    return {"/v1/evidence": EVIDENCE_MAX_BODY, "/v1/evidence/batch": MAX_BATCH_BODY}


def _body_limit(settings: Settings, own_limits: dict[str, int]) -> Callable[[Scope], int]:
    """A body limit per route, each sized to the route's documented maximum; the rest get
    ``max_body_bytes``."""
    members_limit = max(settings.max_body_bytes, MEMBERS_MAX_BODY)

    def body_limit(scope: Scope) -> int:
        if scope.get("method") == "POST":
            path = str(scope.get("path", ""))
            if path in own_limits:
                return own_limits[path]
            if _MEMBERS_PATH.fullmatch(path):
                return members_limit
        return settings.max_body_bytes

    return body_limit


def _customize_openapi(app: FastAPI) -> None:
    fastapi_openapi = app.openapi
    exact = {float(bound): bound for bound in (UINT64_MAX, MAX_GROUP_ID)}

    def openapi() -> dict[str, Any]:
        spec = cast(dict[str, Any], _exact_bounds(fastapi_openapi(), exact))
        # Registration takes the operator token optionally (it bypasses the admission
        # policy; a wrong one is refused): "no auth" is one of the accepted requirements.
        register = spec.get("paths", {}).get("/v1/groups/{group_id}/members", {}).get("post")
        if register is not None and register.get("security"):
            register["security"] = [{}, *[r for r in register["security"] if r]]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


_BOUND_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


def _exact_bounds(document: Any, exact: dict[float, int]) -> Any:
    """Integer bounds of an OpenAPI document as integers. FastAPI's OpenAPI model holds
    ``minimum``/``maximum`` as floats, which turns 2^64 - 1 into 2^64 (printed
    18446744073709552000); ``exact`` maps each such float back to the API's integer."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key in _BOUND_KEYS and isinstance(value, float) and value.is_integer():
                document[key] = exact.get(value, int(value))
            else:
                _exact_bounds(value, exact)
    elif isinstance(document, list):
        for item in document:
            _exact_bounds(item, exact)
    return document
