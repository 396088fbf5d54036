"""The routes of the registry's HTTP API, one ``APIRouter`` per concern (docs/api.md).

Each handler validates and maps; the service (``request.app.state.service``) decides.
Every router uses :class:`registry.web.errors.ApiRoute`: strict JSON bodies, and a
``RegistryError`` answered as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from registry.service.facade import RegistryService


def service_of(request: Request) -> RegistryService:
    """The service the app serves."""
    service: RegistryService = request.app.state.service
    return service
