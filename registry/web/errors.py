"""The error contract on the wire: every error is ``{"error": {"code", "message"}}``
with the status of :data:`registry.errors.STATUS` (docs/api.md "Error codes").

- :func:`error_response` renders a :class:`registry.errors.RegistryError` (the one error
  class: raised by the service, the routes, the evidence routes and the relay);
- :class:`ApiRoute`, the route class of every router: parses JSON bodies strictly
  (:mod:`zk.strict_json`) and answers a ``RegistryError`` raised by a handler or its
  dependencies, so a router mounted on any app keeps the contract;
- :func:`install_error_handlers`: the app's handlers for what happens outside a handler
  (schema errors, unknown routes, the ledger unreachable).

Messages name the offending field and never echo its value.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.errors import OTHER_STATUS, SCHEMA_ERROR, SCHEMA_STATUS, STATUS, RegistryError
from registry.ledger.errors import LedgerError
from registry.web.models import BASE_FIELD, COMMITMENT, FIELD, HEX32, UINT256, ErrorResponse
from zk import strict_json

log = logging.getLogger(__name__)


def error_response(error: RegistryError) -> JSONResponse:
    """The answer of ``error``: its status, ``{"error": {"code", "message"}}`` and headers."""
    return JSONResponse(error.to_dict(), status_code=error.status, headers=error.headers)


def _description(status: int) -> str:
    """What an error answer of ``status`` may carry: the codes of the one table."""
    codes = sorted(code for code, s in STATUS.items() if status in (s, OTHER_STATUS.get(code)))
    named = ", ".join(f"`{code}`" for code in codes)
    return f"Error `{{\"error\": {{\"code\", \"message\"}}}}`: {named} (docs/api.md, Error codes)."


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of the error statuses a route can answer."""
    return {s: {"model": ErrorResponse, "description": _description(s)} for s in statuses}


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


def model_error_text(exc: ValidationError, prefix: str) -> str:
    """The first problems of a model validation, fields named under ``prefix`` (values never
    echoed): what a relay says of a proof that breaks the schema the registry enforces."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in (prefix, *err.get("loc", ())))
        parts.append(f"{loc}: {_error_text(err)}")
    return "; ".join(parts) or f"{prefix}: invalid"


def validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """(code, message) for a schema error; the message names fields, never echoes input."""
    parts = []
    code = "malformed"
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query")]
        if err.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
            continue
        # A bad commitment *value*; a missing field, one the route does not take (e.g.
        # "commitments" posted to /v1/authorize), or a list that is not one or too short
        # or too long, is malformed (docs/api.md).
        value = loc[:1] == ["commitment"] or (loc[:1] == ["commitments"] and len(loc) > 1)
        if value and err.get("type") not in ("extra_forbidden", "missing"):
            code = "invalid_commitment"
        parts.append(f"{'.'.join(loc) or 'request'}: {_error_text(err)}")
    return code, "; ".join(parts) or "invalid request"


def json_input_error(error: strict_json.JsonInputError) -> RegistryError:
    """A body refused by the strict JSON parser: 400 ``duplicate_key`` / ``too_deep``,
    422 ``malformed`` for text that is not JSON (the registry and the relay alike)."""
    if error.code == strict_json.INVALID:
        return RegistryError(SCHEMA_ERROR, f"the body is not valid JSON: {error}", SCHEMA_STATUS)
    return RegistryError(error.code, str(error))


class JsonBodyError(StarletteHTTPException):
    """Carries a :func:`json_input_error` out of ``Request.json()``: FastAPI passes an
    ``HTTPException`` raised there through as it is (anything else becomes its own 400)."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


class _StrictJsonRequest(Request):
    """FastAPI reads a JSON body through ``Request.json()``: parse it strictly instead of
    with ``json.loads`` (duplicate keys, deep nesting, NaN refused)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = strict_json.loads(await self.body())
            except strict_json.JsonInputError as exc:
                raise JsonBodyError(json_input_error(exc)) from None
        return self._json


class ApiRoute(APIRoute):
    """An ``APIRoute`` whose handler sees a :class:`_StrictJsonRequest` (bodies parsed
    strictly; the models, validation and OpenAPI document stay FastAPI's) and whose
    ``RegistryError`` becomes the error answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def api_handler(request: Request) -> Response:
            try:
                return await handler(_StrictJsonRequest(request.scope, request.receive))
            except RegistryError as exc:
                return error_response(exc)
            except JsonBodyError as exc:
                return error_response(exc.error)

        return api_handler


#: Codes of the answers of the router itself (no route, no such method).
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: SCHEMA_ERROR, 413: "too_large"}


def install_error_handlers(app: FastAPI) -> None:
    """The app's answers to errors raised outside a route handler's own code."""

    @app.exception_handler(RegistryError)
    async def _registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(LedgerError)
    async def _ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        log.warning("ledger error: %s", type(exc).__name__)
        return error_response(RegistryError("ledger_unavailable", "the ledger cannot be reached or refused the operation"))

    @app.exception_handler(sqlite3.OperationalError)
    async def _database_error(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        # Stores raise sqlite3's classes on both backends (registry/storage/database.py).
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(
            RegistryError("database_unavailable", "the registry's database does not answer; try again", headers={"Retry-After": "1"})
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = validation_message(exc)
        return error_response(RegistryError(code, message, SCHEMA_STATUS))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, JsonBodyError):
            return error_response(exc.error)
        if exc.status_code == 400:  # FastAPI could not decode the body: a schema error like the others
            return error_response(RegistryError(SCHEMA_ERROR, "the body is not valid JSON", SCHEMA_STATUS))
        code = _HTTP_CODES.get(exc.status_code, SCHEMA_ERROR if exc.status_code < 500 else "internal")
        return error_response(RegistryError(code, str(exc.detail), exc.status_code, getattr(exc, "headers", None)))
