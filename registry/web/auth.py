"""The operator token of the registry's HTTP API (docs/api.md "Conventions").

Operator endpoints need ``Authorization: Bearer <token>``, the token the app was created
with (``app.state.operator_token``; ``None`` disables the operator endpoints). The token is
compared in constant time.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registry.errors import RegistryError

bearer = HTTPBearer(auto_error=False, description="Operator token (`ZKID_OPERATOR_TOKEN` of the registry).")


def operator(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
    """A FastAPI dependency: the request carries the operator token, or is refused."""
    token: str | None = request.app.state.operator_token
    if token is None:
        raise RegistryError("operator_disabled", "operator endpoints are disabled (no operator token configured)")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise RegistryError("unauthorized", "operator token required", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise RegistryError("forbidden", "wrong operator token")


async def maybe_operator(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> bool:  # noqa: B008
    """True with a valid operator token, False without one; a wrong one is refused.

    ``async``: a token comparison is far cheaper than a hop to the thread pool, which a
    sync dependency costs every registration (``POST /v1/groups/{id}/members``)."""
    if credentials is None:
        return False
    operator(request, credentials)
    return True
