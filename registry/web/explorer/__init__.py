"""The explorer: read-only HTML pages over the registry's public state (docs/explorer.md).

Mounted under ``/explorer`` by :func:`mount`. Every page is server-rendered HTML tables
(it reads without JavaScript); the scripts add charts and the bundle verifier, which runs
in the browser against the user's own trusted values and ledger RPC URL (it never asks
this registry whether a bundle is valid). Scripts, styles and the verifier's libraries
(``@noble/hashes``, ``@noble/curves``, pinned in package-lock.json, with their licences)
are served from here: no other host is contacted.

The JSON behind each page is the documented API (:mod:`registry.web.routes.explorer`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from registry.web.explorer.pages import VENDOR, router, security_headers, verifier_available

STATIC = Path(__file__).resolve().parent / "static"


class _Static(StaticFiles):
    """Static files with the explorer's security headers (nosniff above all: a served
    package file must never be taken for a script or a page)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        headers = security_headers()
        del headers["Cache-Control"]  # static files keep their ETag caching
        response.headers.update(headers)
        return response


def mount(app: FastAPI) -> None:
    """Add the explorer's pages and static files to ``app`` (none in the OpenAPI document)."""
    app.include_router(router)
    app.mount("/explorer/static", _Static(directory=STATIC), name="explorer-static")
    for name, path in VENDOR.items():
        if path.is_dir():  # without node_modules the verifier page says it cannot run
            app.mount(f"/explorer/vendor/{name}", _Static(directory=path), name=f"explorer-{name}")


__all__ = ["mount", "verifier_available"]
