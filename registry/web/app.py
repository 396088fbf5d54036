"""The registry's HTTP API: a thin FastAPI layer over :class:`registry.service.facade.RegistryService`.

It validates and maps; the service decides. Every error is JSON
``{"error": {"code": ..., "message": ...}}`` with a 4xx status for bad input (never a
5xx), field elements are canonical decimal strings (``zk.field.parse_decimal``: no sign,
no spaces, no leading zeros, below the modulus; never reduced), request bodies larger
than ``settings.max_body_bytes`` are refused with 413 before they are parsed, and
operator endpoints need ``Authorization: Bearer <settings.operator_token>`` (disabled when
no token is configured). The endpoints, codes and privacy rules are in docs/api.md; the
authorization checks in docs/authorization.md.

Privacy: nothing here logs a path, body, commitment, root, proof or nullifier. The only
request record is the connection log (:mod:`registry.storage.access_log`: time and IP); metrics
are labelled by route *template*, method, status and refusal reason, never by value.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.routing import APIRoute
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.storage.access_log import FILE_NAME as ACCESS_LOG_FILE
from registry.storage.access_log import AccessLog, AccessLogMiddleware, ASGIApp, Message, Receive, Scope, Send, client_ip
from registry.service.authorization import MAX_GROUP_ID, Decision, Reason, json_integer
from registry.service.batcher import FAILURE_KINDS
from registry.ledger.errors import LedgerError
from registry.web.rate_limit import RateLimitMiddleware, bearer_exempt, registry_limiter, registry_route_class, retry_after
from registry.service.settings import Settings
from registry.web.metrics import TrafficMetrics, error_code
from zk import strict_json
from zk.field import Q, R, FieldError, parse_decimal

if TYPE_CHECKING:
    from registry.service.facade import RegistryService

log = logging.getLogger(__name__)

API_VERSION = "1"


def decimal_pattern(bound: int, *, zero: bool = True) -> str:
    """A regular expression matching exactly the canonical decimals of the integers in
    ``[0, bound)`` (``[1, bound)`` without ``zero``), so that the OpenAPI document states
    the field ranges exactly and schema-valid input is never refused for its range.

    Shorter numbers are all below the bound; a number with as many digits as the bound
    is below it iff it shares a prefix with it and then has a smaller digit.
    """
    digits = str(bound)
    n = len(digits)
    branches = ["0"] if zero else []
    if n > 1:
        branches.append("[1-9]" if n == 2 else f"[1-9][0-9]{{0,{n - 2}}}")
    for i, d in enumerate(digits):
        low = 1 if i == 0 else 0
        high = int(d) - 1
        if high < low:
            continue
        rest = n - 1 - i
        branch = digits[:i] + (str(low) if low == high else f"[{low}-{high}]")
        if rest:
            branch += "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
        branches.append(branch)
    return "^(?:" + "|".join(branches) + ")$"


#: Canonical decimals: below r (field elements), in (0, r) (commitments), below q (curve
#: coordinates), below 2**256 (a proof's message and scope).
FIELD = decimal_pattern(R)
COMMITMENT = decimal_pattern(R, zero=False)
BASE_FIELD = decimal_pattern(Q)
UINT256 = decimal_pattern(2**256)
HEX32 = r"^(0x)?[0-9a-fA-F]{64}$"
UINT64_MAX = 2**64 - 1
#: Group ids are sequential from 0 and stay within 2**53 - 1 so that JSON numbers survive
#: every parser (JS, floats): ``registry.service.authorization.MAX_GROUP_ID``, shared with relays.
MAX_COMMITMENTS_PER_REQUEST = 1000
#: Body limit of a registration: 1000 commitments of up to 77 digits are ~80 KB of
#: compact JSON; this leaves room for pretty-printing and stays bounded.
MEMBERS_MAX_BODY = 128 * 1024
_MEMBERS_PATH = re.compile(r"/v1/groups/[^/]+/members")
#: A refused body is read and dropped up to this size (beyond it the connection is cut).
DRAIN_LIMIT = 1 << 20
#: Seconds a request body may take to arrive (408 ``request_timeout`` after them).
BODY_TIMEOUT = 30.0

# HTTP status of each refusal reason of POST /v1/authorize (docs/api.md). A request that
# passes the schema and still holds a malformed proof (points off their curves) is a
# refused authorization (403 "malformed"); 422 is for requests that break the schema.
REFUSAL_STATUS: dict[Reason, int] = {
    Reason.UNKNOWN_GROUP: 404,
    Reason.NULLIFIER_REUSED: 409,
    Reason.INDEX_STALE: 503,  # not a verdict on the proof: try again once the index caught up
}
REFUSAL_MESSAGE: dict[Reason, str] = {
    Reason.MALFORMED: "the proof is not a well-formed Semaphore proof (points must be on their curves)",
    Reason.BAD_SCOPE: "the scope is not a relay-epoch scope",
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


# ---------------------------------------------------------------------------- wire models

def _json_integer(value: Any) -> Any:
    """JSON integers as JSON Schema defines them (``5`` and ``5.0``), never strings or
    booleans (pydantic's lax mode would take ``"5"``, its strict mode refuses ``5.0``):
    ``registry.service.authorization.json_integer``, the rule a relay checking locally applies."""
    number = json_integer(value)
    if number is None:
        raise ValueError("must be a JSON integer")
    return number


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
# Stated explicitly: in an optional field pydantic would write its bounds as "ge"/"le",
# which JSON Schema does not know.
RootWindow = Annotated[
    int,
    BeforeValidator(_json_integer),
    Field(ge=0, le=UINT64_MAX),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": UINT64_MAX}),
]

_CANONICAL = "canonical decimal string (ASCII digits, no sign, spaces or leading zeros)"
FieldElement = Annotated[StrictStr, Field(pattern=FIELD, description=f"Element of the BN254 scalar field: {_CANONICAL}, below r.")]
Commitment = Annotated[StrictStr, Field(pattern=COMMITMENT, description=f"Identity commitment: {_CANONICAL}, 0 < c < r.")]
Coordinate = Annotated[StrictStr, Field(pattern=BASE_FIELD, description=f"Curve coordinate: {_CANONICAL}, below q.")]
Uint256 = Annotated[StrictStr, Field(pattern=UINT256, description=f"{_CANONICAL}, below 2^256.")]


GroupId = Annotated[int, Path(ge=0, le=MAX_GROUP_ID, description="Group id.")]
CommitmentPath = Annotated[str, Path(pattern=COMMITMENT, description=f"Identity commitment: {_CANONICAL}, 0 < c < r.")]
RootPath = Annotated[str, Path(pattern=FIELD, description=f"Merkle root: {_CANONICAL}, below r.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Strict):
    code: str = Field(description="Machine-readable error code (docs/api.md).")
    message: str


class ErrorResponse(_Strict):
    error: ErrorDetail


Uint64 = Annotated[
    int,
    BeforeValidator(_json_integer),
    Field(ge=0, le=UINT64_MAX),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": UINT64_MAX}),
]
OptionalGroupId = Annotated[
    int,
    BeforeValidator(_json_integer),
    Field(ge=0, le=MAX_GROUP_ID),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_GROUP_ID}),
]


class AdmissionModel(_Strict):
    """A group's admission policy (docs/admission.md)."""

    policy: Literal["zk", "invite", "open", "closed"] = Field(
        "zk", description="`zk` (anonymous admission proof), `invite`, `open` (anyone) or `closed` (operator only)."
    )
    admission_group: OptionalGroupId | None = Field(None, description="Policy `zk`: the group of checked persons.")
    round: Uint64 = Field(0, description="Policy `zk`: the admission round (one registration per credential per round).")
    send: StrictBool | None = Field(None, description="A send group (sends authorized); default: true, false for `closed`.")


class CreateGroupRequest(_Strict):
    root_window: RootWindow | None = Field(
        None, description="Seconds a superseded root stays valid (default: the deployment's)."
    )
    admission: AdmissionModel | None = Field(
        None,
        description="Admission policy (default: `zk` with the registry's configured admission group; none configured: the group is not served until one is set).",
    )


class InvitesRequest(_Strict):
    count: JsonInt = Field(ge=1, le=1000, description="Number of single-use invite codes.")
    expires_at: JsonInt = Field(ge=1, le=UINT64_MAX, description="Unix time (seconds) after which they are refused.")


class InvitesResponse(BaseModel):
    group_id: int
    invites: list[str]
    expires_at: int


class SemaphoreProofModel(_Strict):
    """The JS SDK's ``SemaphoreProof`` JSON (``@semaphore-protocol/proof`` v4)."""

    merkleTreeDepth: JsonInt = Field(ge=1, le=32)
    merkleTreeRoot: FieldElement
    nullifier: FieldElement
    message: Uint256
    scope: Uint256
    points: list[Coordinate] = Field(min_length=8, max_length=8, description="Packed Groth16 proof (8 coordinates).")


class RegisterRequest(_Strict):
    commitments: list[Commitment] = Field(
        min_length=1,
        max_length=MAX_COMMITMENTS_PER_REQUEST,
        description="Identity commitments: distinct field elements 0 < c < r.",
    )
    admission_proof: SemaphoreProofModel | None = Field(
        None, description="Policy `zk`: a proof of membership in the admission group (docs/admission.md)."
    )
    invite: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = Field(
        None, description="Policy `invite`: a single-use invite code."
    )


class MemberStatusModel(BaseModel):
    group_id: int
    commitment: str
    status: Literal["pending", "included", "final", "refused"]
    index: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    confirmations: int = 0
    reason: str | None = Field(
        default=None, description="With status `refused`: why the ledger refused it for good (`forbidden`, `unknown_group`)."
    )


class RegisterResponse(BaseModel):
    members: list[MemberStatusModel]


class GroupModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    group_id: int
    root: str
    size: int
    depth: int
    root_window: int | None = None
    epoch_length: int
    message_limit: int
    clock_skew: int
    admission: AdmissionModel | None = Field(None, description="The group's admission policy; null: not served.")


class GroupsResponse(BaseModel):
    groups: list[GroupModel]


class MerkleProofModel(BaseModel):
    root: str
    leaf: str
    index: int
    siblings: list[str]


class MerkleProofResponse(BaseModel):
    group_id: int
    merkle_proof: MerkleProofModel


#: Most leaves one ``GET /v1/groups/{id}/members`` page holds (~80 bytes each).
MAX_MEMBERS_PAGE = 10_000


class MembersPageModel(BaseModel):
    group_id: int
    root: str = Field(description="The group's current root when the page was read.")
    size: int = Field(description="Number of leaves, removed ones included.")
    start: int
    members: list[str] = Field(description='Leaves start.. in tree order, decimal; "0" for a removed member.')


class RootInfoModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    root: str
    group_id: int
    valid: bool
    current: bool


class AuthorizeRequest(_Strict):
    group_id: JsonInt = Field(ge=0, le=MAX_GROUP_ID)
    proof: SemaphoreProofModel
    blob_digest: StrictStr = Field(pattern=HEX32, description="SHA-256 of the encrypted blob, 64 hex digits.")


class DecisionModel(BaseModel):
    authorized: StrictBool
    reason: str = Field(description="`ok` or a refusal reason (docs/authorization.md).")
    nullifier: str | None = None
    epoch: int | None = None


class RefusalModel(DecisionModel):
    error: ErrorDetail


class HealthModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"]
    reasons: list[str] = Field(default_factory=list, description="Why degraded (machine-readable codes, docs/api.md).")
    region: str
    ledger: Literal["up", "down"]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed request (`malformed`).",
        401: "Missing operator token (`unauthorized`).",
        403: "Wrong operator token (`forbidden`), operator endpoints disabled (`operator_disabled`), a group this registry does not administer (`forbidden`) or does not serve (`group_not_served`), or an admission refusal (`admission_*`, `invite_invalid`, `invite_expired`; docs/admission.md).",
        404: "Unknown group, member or root (`unknown_group`, `not_member`, `unknown_root`).",
        409: "Conflict (`duplicate`; `pending`: registered, not yet on chain; `admission_used`, `invite_used`: the credential was used).",
        413: "Request body larger than the limit (`too_large`).",
        429: "Too many requests from this client address (`rate_limited`); `Retry-After` says when to come back.",
        422: "Invalid input: `malformed`, `invalid_commitment`.",
        502: "The ledger refused or failed the operation (`ledger_error`).",
        503: "The ledger cannot be reached (`ledger_unavailable`).",
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}


# ---------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answer produced by this layer (the service raises ``RegistryError``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


#: What a value matching each pattern is (the message of a pattern mismatch).
_DECIMAL_MESSAGE = "not a canonical decimal in range (digits only, no leading zeros, below the modulus)"
_PATTERN_MESSAGES = {
    **{pattern: _DECIMAL_MESSAGE for pattern in (FIELD, COMMITMENT, BASE_FIELD, UINT256)},
    HEX32: "not 32 bytes in hex (64 hex digits, optional 0x prefix)",
}
#: Bound errors, with the bound printed from the exact integer (pydantic's text prints
#: 2^64 - 1 through a float: 18446744073709552000).
_BOUND_MESSAGES = {
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be greater than {}"),
}


def _error_text(err: Any) -> str:
    kind = err.get("type")
    ctx = err.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return _PATTERN_MESSAGES.get(str(ctx.get("pattern")), "not in the expected format")
    if kind in _BOUND_MESSAGES:
        key, text = _BOUND_MESSAGES[kind]
        bound = ctx.get(key)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            return text.format(int(bound) if isinstance(bound, int) or bound.is_integer() else bound)
    return str(err.get("msg", "invalid"))


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """(code, message) for a schema error; the message names fields, never echoes input."""
    parts = []
    code = "malformed"
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query")]
        if err.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
            continue
        # A bad commitment *value*; a missing field, or one the route does not take (e.g.
        # "commitments" posted to /v1/authorize), is malformed (docs/api.md).
        if loc and loc[0] in ("commitments", "commitment") and err.get("type") not in ("extra_forbidden", "missing"):
            code = "invalid_commitment"
        parts.append(f"{'.'.join(loc) or 'request'}: {_error_text(err)}")
    return code, "; ".join(parts) or "invalid request"


class JsonBodyError(StarletteHTTPException):
    """A request body refused by the strict JSON parser (:mod:`zk.strict_json`):
    400 ``duplicate_key`` / ``too_deep``, 422 ``malformed`` for text that is not JSON."""

    def __init__(self, error: strict_json.JsonInputError) -> None:
        if error.code == strict_json.INVALID:
            status, code, message = 422, "malformed", f"the body is not valid JSON: {error}"
        else:
            status, code, message = 400, error.code, str(error)
        super().__init__(status, message)
        self.code = code
        self.message = message


class _StrictJsonRequest(Request):
    """FastAPI reads a JSON body through ``Request.json()``: parse it strictly instead of
    with ``json.loads`` (duplicate keys, deep nesting, NaN refused)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = strict_json.loads(await self.body())
            except strict_json.JsonInputError as exc:
                raise JsonBodyError(exc) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """An ``APIRoute`` whose handler sees a :class:`_StrictJsonRequest`: request bodies are
    parsed strictly, the models, validation and OpenAPI document stay FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict_handler


def _field(text: str, name: str, code: str) -> int:
    try:
        return parse_decimal(text, name, R)
    except FieldError as exc:
        raise ApiError(422, code, str(exc)) from None


def _commitment(text: str, name: str = "commitment") -> int:
    value = _field(text, name, "invalid_commitment")
    if value == 0:
        raise ApiError(422, "invalid_commitment", f"{name} must not be 0")
    return value


def _jsonable(value: Any) -> Any:
    """Big integers (field elements) as decimal strings; small ones stay numbers."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value) if abs(value) >= 2**53 else value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _group_json(info: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = _jsonable(info)
    data["root"] = str(info["root"])
    return data


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


_BOUND_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


# ---------------------------------------------------------------------------- middleware


class BodyLimitMiddleware:
    """413 ``too_large`` for bodies over ``limit`` bytes, decided before anything parses them:
    on the declared ``Content-Length`` at once, and while streaming for chunked bodies.
    ``limit`` may be a function of the request's scope (a limit per route).

    A body must also arrive within ``timeout`` seconds of the request's start, else 408
    ``request_timeout`` (a client trickling a body would hold a connection and a worker
    forever). A client that disconnects mid-body ends its request quietly: the app's
    ``ClientDisconnect`` is not an error of ours and is not logged."""

    def __init__(self, app: ASGIApp, limit: int | Callable[[Scope], int], timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        body = ErrorResponse(error=ErrorDetail(code=code, message=message)).model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drain(receive: Receive, message: Message, timeout: float) -> None:
        """Read (and drop) the rest of a refused body, up to ``DRAIN_LIMIT`` bytes and
        ``timeout`` seconds, so that a client still sending it reads our answer instead of
        a connection reset."""

        async def drain() -> None:
            drained = 0
            current = message
            while current.get("more_body", False) and drained <= DRAIN_LIMIT:
                current = await receive()
                if current.get("type") != "http.request":
                    return
                drained += len(current.get("body", b""))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain(), max(0.0, timeout))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope) if callable(self.limit) else self.limit
        loop = asyncio.get_running_loop()
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    await self._refuse(send, 400, "malformed", "invalid Content-Length")
                    return
                if int(value) > limit:
                    await self._refuse(send, 413, "too_large", f"request body larger than {limit} bytes")
                    if int(value) <= DRAIN_LIMIT:
                        await self._drain(receive, {"more_body": True}, self.timeout)
                    return
        seen = 0
        started = False
        refused = False
        disconnected = False
        body_done = False
        deadline: float | None = None  # from the app's first read: its own work does not count

        async def limited_receive() -> Message:
            nonlocal seen, refused, disconnected, body_done, deadline
            if deadline is None:
                deadline = loop.time() + self.timeout
            if refused:
                return {"type": "http.disconnect"}
            if body_done:
                message = await receive()  # waiting for a disconnect: no deadline
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    refused = True
                    if not started:
                        await self._refuse(send, 408, "request_timeout", f"the request body did not arrive within {self.timeout:g} s")
                    return {"type": "http.disconnect"}
            if message.get("type") == "http.disconnect":
                disconnected = True
            elif message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    # Answer now and tell the app the client is gone: whatever it does
                    # next (FastAPI turns the disconnect into an error) is not sent.
                    refused = True
                    if not started:
                        await self._refuse(send, 413, "too_large", f"request body larger than {limit} bytes")
                    await self._drain(receive, message, deadline - loop.time())
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            # After a refusal or the client's own disconnect, whatever the app raised
            # (starlette's ClientDisconnect) concerns nobody: no answer can reach the client.
            if not (refused or disconnected):
                raise


class ErrorGuardMiddleware:
    """Turns an unexpected exception into a 500 JSON error and logs only its type: an
    exception's message or traceback might hold a commitment or a proof."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            route = scope.get("route")
            log.error("internal error %s on %s", type(exc).__name__, getattr(route, "path", "unmatched"))
            if not started:
                response = error_response(500, "internal", "internal error")
                await response(scope, receive, send)


class Metrics:
    """Prometheus metrics of one app (its own registry: several apps can live in a process)."""

    def __init__(self, service: RegistryService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "zkid_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "zkid_http_request_duration_seconds", "Time to answer, by route template.",
            ["route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )
        self.authorizations = Counter(
            "zkid_authorizations", "POST /v1/authorize outcomes by reason (`ok` = authorized).",
            ["reason"], registry=self.registry,
        )
        for reason in Reason:
            self.authorizations.labels(reason.value)
        self.registry.register(_ServiceCollector(service))


class _ServiceCollector(Collector):
    """Gauges read from ``service.health()`` at scrape time."""

    def __init__(self, service: RegistryService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            health = self.service.health()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail
            log.warning("health() failed during a metrics scrape: %s", type(exc).__name__)
            health = {"ledger": "down"}
        up = GaugeMetricFamily("zkid_ledger_up", "1 if the ledger node answers.")
        up.add_metric([], 1.0 if health.get("ledger") == "up" else 0.0)
        yield up
        failures = CounterMetricFamily(
            "zkid_batcher_failures", "Batcher failures by kind (docs/api.md).", labels=["kind"]
        )
        counts = self.service.batcher.stats.failures
        for kind in FAILURE_KINDS:
            failures.add_metric([kind], float(counts.get(kind, 0)))
        yield failures
        degraded = GaugeMetricFamily("zkid_health_degraded", "1 per reason /v1/health gives now.", labels=["reason"])
        for reason in health.get("reasons", []) or []:
            degraded.add_metric([str(reason)], 1.0)
        yield degraded
        for key, name, doc in (
            ("outbox_pending", "zkid_outbox_pending", "Registrations accepted but not yet on chain."),
            ("outbox_unconfirmed", "zkid_outbox_unconfirmed", "Registrations mined, not yet final."),
            ("oldest_pending_seconds", "zkid_oldest_pending_seconds", "Age of the oldest registration not yet on chain."),
            ("indexed_block", "zkid_indexed_block", "Last block applied to the index."),
            ("head_block", "zkid_head_block", "Latest block of the ledger node."),
            ("lag_blocks", "zkid_index_lag_blocks", "Blocks between the head and the index."),
        ):
            value = health.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                gauge = GaugeMetricFamily(name, doc)
                gauge.add_metric([], float(value))
                yield gauge


class MetricsMiddleware:
    """Counts every request by route template, method and status, its latency, and each
    answer >= 400 by route and ``error.code`` (one pass over the response for both)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, traffic: TrafficMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = False
        code: str | None = None
        t0 = time.perf_counter()

        async def status_send(message: Message) -> None:
            nonlocal status, started, code
            if message.get("type") == "http.response.start":
                status = int(message["status"])
                started = True
            elif message.get("type") == "http.response.body" and status >= 400 and code is None:
                code = error_code(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # the template, not the path
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
            if started and status >= 400:
                self.traffic.refusals.labels(route, code or "other").inc()


# ---------------------------------------------------------------------------- the app


def create_app(service: RegistryService, settings: Settings) -> FastAPI:
    """The ASGI app. The caller owns ``service`` (``start``/``stop``); the app owns its
    connection log (opened here, flushed and purged in the background while it runs)."""
    from registry.service.facade import RegistryError

    access_log = AccessLog(settings.data_dir / ACCESS_LOG_FILE, settings.access_log_hours)
    metrics = Metrics(service)
    limiter = registry_limiter(settings)  # per-IP limits (registry/web/rate_limit.py, docs/api.md)
    traffic = TrafficMetrics(metrics.registry, service, limiter, settings.spend_per_hour)
    token = settings.operator_token.get_secret_value() if settings.operator_token is not None else None
    bearer = HTTPBearer(auto_error=False, description="Operator token (`ZKID_OPERATOR_TOKEN` of the registry).")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access_log.start()
        try:
            yield
        finally:
            access_log.close()

    app = FastAPI(
        title="letro-zkid registry",
        version=API_VERSION,
        description=(
            "ZK-ID registry of the letro messenger (Semaphore v4 groups anchored on an EVM ledger). "
            "Errors are `{\"error\": {\"code\", \"message\"}}`; field elements are canonical decimal "
            "strings; a body over its route's size limit gets 413 `too_large` (docs/api.md); "
            "bodies are parsed strictly (a repeated key: 400 `duplicate_key`; nesting deeper "
            f"than {strict_json.MAX_DEPTH}: 400 `too_deep`). "
            "The registry logs connection time and client IP only (see docs/api.md)."
        ),
        lifespan=lifespan,
        # Every route is under the per-IP limits (docs/api.md "Limits per client IP").
        responses=_errors(429),
    )
    app.router.route_class = StrictJsonRoute  # every route below parses its body strictly
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
    app.state.access_log = access_log
    app.state.metrics = metrics
    app.state.rate_limiter = limiter
    app.state.service = service

    # A body limit per route, each sized to the route's documented maximum; the rest
    # get ``max_body_bytes``.
    own_limits: dict[str, int] = {}
    if getattr(service, "evidence", None) is not None:
        from registry.web.evidence_routes import MAX_BATCH_BODY
        from registry.web.evidence_routes import MAX_BODY as EVIDENCE_MAX_BODY

        own_limits = {"/v1/evidence": EVIDENCE_MAX_BODY, "/v1/evidence/batch": MAX_BATCH_BODY}
    members_limit = max(settings.max_body_bytes, MEMBERS_MAX_BODY)

    def body_limit(scope: Scope) -> int:
        if scope.get("method") == "POST":
            path = str(scope.get("path", ""))
            if path in own_limits:
                return own_limits[path]
            if _MEMBERS_PATH.fullmatch(path):
                return members_limit
        return settings.max_body_bytes

    # Outermost first at run time: connection log, metrics, refusal counts, per-IP limit
    # (before any body is read), error guard, body limit.
    app.add_middleware(BodyLimitMiddleware, limit=body_limit, timeout=settings.body_timeout)
    app.add_middleware(ErrorGuardMiddleware)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, classify=registry_route_class, exempt=bearer_exempt(token))
    app.add_middleware(MetricsMiddleware, metrics=metrics, traffic=traffic)
    app.add_middleware(AccessLogMiddleware, log=access_log)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RegistryError)
    async def _registry_error(request: Request, exc: Any) -> JSONResponse:
        status = int(getattr(exc, "status", 400))
        # A full backlog clears as batches land: tell clients when to come back.
        headers = {"Retry-After": str(max(1, int(settings.batch_interval * 5)))} if exc.code == "backlog_full" else None
        return error_response(status, str(exc.code), str(getattr(exc, "message", None) or exc), headers)

    @app.exception_handler(LedgerError)
    async def _ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        log.warning("ledger error: %s", type(exc).__name__)
        return error_response(503, "ledger_unavailable", "the ledger cannot be reached or refused the operation")

    @app.exception_handler(JsonBodyError)
    async def _json_body_error(request: Request, exc: JsonBodyError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return error_response(422, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not decode the body: a schema error like the others
            return error_response(422, "malformed", "the body is not valid JSON")
        codes = {404: "not_found", 405: "method_not_allowed", 400: "malformed", 413: "too_large"}
        code = codes.get(exc.status_code, "malformed" if exc.status_code < 500 else "internal")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    def operator(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if token is None:
            raise ApiError(403, "operator_disabled", "operator endpoints are disabled (no operator token configured)")
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError(401, "unauthorized", "operator token required", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(403, "forbidden", "wrong operator token")

    def maybe_operator(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> bool:  # noqa: B008
        """True with a valid operator token, False without one; a wrong one is refused."""
        if credentials is None:
            return False
        operator(credentials)
        return True

    @app.post(
        "/v1/groups",
        status_code=201,
        response_model=GroupModel,
        responses=_errors(401, 403, 413, 422, 502, 503),
        tags=["operator"],
        summary="Create a group (operator)",
        dependencies=[Depends(operator)],
    )
    def create_group(body: CreateGroupRequest | None = None) -> JSONResponse:
        admission = None if body is None or body.admission is None else body.admission.model_dump()
        group_id = service.create_group(body.root_window if body is not None else None, admission)
        return JSONResponse(_group_json(service.group_info(group_id)), status_code=201)

    @app.put(
        "/v1/groups/{group_id}/admission",
        response_model=GroupModel,
        responses=_errors(401, 403, 404, 413, 422),
        tags=["operator"],
        summary="Set a group's admission policy and whether it is a send group (operator)",
        dependencies=[Depends(operator)],
    )
    def set_admission(group_id: GroupId, body: AdmissionModel) -> JSONResponse:
        from registry.service.admission import admission_from_json

        service.set_admission(admission_from_json(group_id, body.model_dump()))
        return JSONResponse(_group_json(service.group_info(group_id)))

    @app.post(
        "/v1/groups/{group_id}/invites",
        status_code=201,
        response_model=InvitesResponse,
        responses=_errors(401, 403, 404, 413, 422),
        tags=["operator"],
        summary="Mint single-use invite codes of an `invite` group (operator; only their hashes are kept)",
        dependencies=[Depends(operator)],
    )
    def create_invites(group_id: GroupId, body: InvitesRequest) -> JSONResponse:
        codes = service.create_invites(group_id, body.count, float(body.expires_at))
        return JSONResponse({"group_id": group_id, "invites": codes, "expires_at": body.expires_at}, status_code=201)

    @app.get("/v1/groups", response_model=GroupsResponse, tags=["groups"], summary="List groups")
    def list_groups() -> JSONResponse:
        return JSONResponse({"groups": [_group_json(g) for g in service.groups()]})

    @app.get(
        "/v1/groups/{group_id}",
        response_model=GroupModel,
        responses=_errors(404, 422),
        tags=["groups"],
        summary="A group: root, size, depth and its authorization parameters",
    )
    def get_group(group_id: GroupId) -> JSONResponse:
        return JSONResponse(_group_json(service.group_info(group_id)))

    @app.post(
        "/v1/groups/{group_id}/members",
        status_code=202,
        response_model=RegisterResponse,
        responses=_errors(401, 403, 404, 409, 413, 422, 503),
        tags=["members"],
        summary="Register commitments under the group's admission policy (durably queued, then anchored in batches)",
    )
    def register(
        group_id: GroupId, body: RegisterRequest, request: Request, as_operator: bool = Depends(maybe_operator)  # noqa: B008
    ) -> JSONResponse:
        values = [_commitment(c, f"commitments[{i}]") for i, c in enumerate(body.commitments)]
        if not as_operator:
            # Counted per commitment: the request paid one token in RateLimitMiddleware.
            wait = limiter.take("registration", client_ip(request.scope), len(values), paid=1)
            if wait == float("inf"):
                burst = limiter.burst("registration")
                raise ApiError(413, "too_large", f"more than {burst} commitments from one client at once")
            if wait > 0:
                raise ApiError(429, "rate_limited", "too many registrations from this address", {"Retry-After": retry_after(wait)})
        if as_operator:  # the operator (an account service writing an admission group) bypasses the policy
            statuses = service.register(group_id, values)
        else:
            proof = None if body.admission_proof is None else body.admission_proof.model_dump()
            statuses = service.admit(group_id, values, admission_proof=proof, invite=body.invite)
        traffic.registrations.inc(len(statuses))
        return JSONResponse({"members": [s.to_json() for s in statuses]}, status_code=202)

    @app.get(
        "/v1/groups/{group_id}/members",
        response_model=MembersPageModel,
        responses=_errors(404, 422),
        tags=["members"],
        summary="A page of the group's leaves in tree order (public on the ledger): build the tree and prove locally",
    )
    def members_page(
        group_id: GroupId,
        start: Annotated[int, Query(ge=0, le=2**32, description="First leaf index.")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_MEMBERS_PAGE, description="Most leaves returned.")] = MAX_MEMBERS_PAGE,
    ) -> JSONResponse:
        return JSONResponse(service.members_page(group_id, start, limit))

    @app.get(
        "/v1/groups/{group_id}/members/{commitment}",
        response_model=MemberStatusModel,
        responses=_errors(404, 422),
        tags=["members"],
        summary="Registration status of a commitment: pending, included or final",
    )
    def member_status(group_id: GroupId, commitment: CommitmentPath) -> JSONResponse:
        return JSONResponse(service.member_status(group_id, _commitment(commitment)).to_json())

    @app.get(
        "/v1/groups/{group_id}/proofs/{commitment}",
        response_model=MerkleProofResponse,
        responses=_errors(404, 409, 422),
        tags=["members"],
        summary="Merkle proof of a member against the group's current indexed root",
    )
    async def merkle_proof(group_id: GroupId, commitment: CommitmentPath) -> JSONResponse:
        value = _commitment(commitment)
        # The hot read path: a proof from the in-memory tree takes ~20 us, far less than a
        # hop to the thread pool. Serve it on the event loop when the index lock is free
        # (an RLock: the service takes it again in this thread); while the indexer holds it
        # (applying new blocks), wait for it in the thread pool, not on the event loop.
        lock = getattr(getattr(service, "index", None), "lock", None)
        if lock is not None and lock.acquire(blocking=False):
            try:
                proof = service.merkle_proof(group_id, value)
            finally:
                lock.release()
        else:
            proof = await run_in_threadpool(service.merkle_proof, group_id, value)
        return JSONResponse({"group_id": group_id, "merkle_proof": proof.to_json()})

    @app.get(
        "/v1/roots/{root}",
        response_model=RootInfoModel,
        responses=_errors(404, 422),
        tags=["groups"],
        summary="Which group a root belongs to and whether it is still valid",
    )
    def root_info(root: RootPath) -> JSONResponse:
        value = _field(root, "root", "malformed")
        info = _jsonable(service.root_info(value))
        info["root"] = str(value)
        return JSONResponse(info)

    @app.post(
        "/v1/authorize",
        response_model=DecisionModel,
        responses={
            **_errors(413),
            403: {"model": RefusalModel, "description": "Refused: the `reason` (and `error.code`) says why."},
            404: {"model": RefusalModel, "description": "Refused: `unknown_group`."},
            409: {"model": RefusalModel, "description": "Refused: `nullifier_reused`."},
            422: {"model": ErrorResponse, "description": "Malformed request or proof (`malformed`)."},
            503: {"model": RefusalModel, "description": "Refused for now: `index_stale` (the index lags the chain)."},
        },
        tags=["authorization"],
        summary="Check a send authorization (docs/authorization.md); 200 only when authorized",
    )
    def authorize(body: AuthorizeRequest) -> JSONResponse:
        digest = bytes.fromhex(body.blob_digest.removeprefix("0x"))
        decision: Decision = service.authorize(body.proof.model_dump(), body.group_id, digest)
        metrics.authorizations.labels(decision.reason.value).inc()
        data = decision.to_json()
        if decision.authorized:
            return JSONResponse(data)
        status = REFUSAL_STATUS.get(decision.reason, 403)
        data["error"] = {"code": decision.reason.value, "message": REFUSAL_MESSAGE.get(decision.reason, "refused")}
        return JSONResponse(data, status_code=status)

    @app.get("/v1/health", response_model=HealthModel, tags=["service"], summary="Service and ledger state")
    def health() -> JSONResponse:
        return JSONResponse(_jsonable(service.health()))

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics (no per-user labels)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    evidence = getattr(service, "evidence", None)
    if evidence is not None:  # the delivery-evidence log (docs/evidence.md)
        from registry.evidence.admission import EvidenceAdmission
        from registry.web.evidence_routes import evidence_router

        admission = EvidenceAdmission(
            service.manifest.chain_id,
            settings.relay_keys,
            evidence,
            max_skew=settings.evidence_max_skew,
            max_age=settings.evidence_max_age,
            rate=settings.evidence_rate,
            burst=settings.evidence_burst,
            clock=getattr(service, "clock", time.time),
        )
        app.state.evidence_admission = admission
        app.include_router(evidence_router(evidence, admission=admission, operator=operator), tags=["evidence"])

    return app
