"""``POST /v1/nullifiers/claim``: relays claim nullifiers at the groups' home registry.

A thin layer over :meth:`registry.service.facade.RegistryService.claim_nullifiers`; the
signed envelope is checked by :class:`registry.service.nullifier_claims.ClaimAuthenticator`
against the evidence log's trusted relay keys (``relay_keys`` and the operator's
``PUT /v1/evidence/relays/{address}``). docs/api.md "Nullifier claims" has the contract.
"""

from __future__ import annotations

import threading
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from registry.service.nullifier_claims import MAX_CLAIMS, ClaimAuthenticator
from registry.web.errors import ApiRoute, error_responses
from registry._utils.integers import MAX_GROUP_ID
from registry.web.models import FIELD, ErrorResponse, JsonInt, _Strict
from registry.web.routes import service_of
from zk.relay_scope import RegistryRef

router = APIRouter(route_class=ApiRoute, tags=["authorization"])
_lock = threading.Lock()

ClaimResult = Literal["claimed", "reused", "unknown_group", "group_not_served", "wrong_epoch"]


class NullifierClaim(_Strict):
    group_id: JsonInt = Field(ge=0, le=MAX_GROUP_ID)
    nullifier: StrictStr = Field(pattern=FIELD, description="The proof's nullifier, a canonical decimal below r.")
    epoch: JsonInt = Field(ge=0, le=2**40 - 1, description="The epoch of the proof's scope.")


class ClaimRequest(_Strict):
    claims: list[NullifierClaim] = Field(min_length=1, max_length=MAX_CLAIMS)


class ClaimResponse(BaseModel):
    results: list[ClaimResult] = Field(description="One result per claim, in the request's order.")


def _authenticator(request: Request) -> ClaimAuthenticator:
    """The app's authenticator (made once): the deployment of the service, the relay keys
    the evidence log trusts (the configured ``relay_keys`` when no log is kept)."""
    state = request.app.state
    with _lock:
        auth: ClaimAuthenticator | None = getattr(state, "claim_authenticator", None)
        if auth is None:
            service = service_of(request)
            manifest = service.manifest
            deployment = RegistryRef(manifest.chain_id, manifest.address("ZkIdRegistry"))
            admission = getattr(state, "evidence_admission", None)
            configured = frozenset(state.settings.relay_keys)
            trusted = admission.trusted if admission is not None else (lambda: configured)
            auth = ClaimAuthenticator(deployment, trusted, clock=service.clock)
            state.claim_authenticator = auth
    return auth


@router.post(
    "/v1/nullifiers/claim",
    response_model=ClaimResponse,
    responses={
        **error_responses(413, 422),
        401: {"model": ErrorResponse, "description": "Envelope refused: `unsigned_request`, `bad_envelope`, "
              "`stale_request`, `replayed_request`, `envelope_signature_invalid`."},
        403: {"model": ErrorResponse, "description": "The relay key is not trusted (`unknown_relay`)."},
    },
    summary="Claim nullifiers for a trusted relay (signed envelope; docs/api.md)",
)
async def claim_nullifiers(body: ClaimRequest, request: Request) -> ClaimResponse:
    raw = await request.body()
    relay = _authenticator(request).check(request.headers, raw)  # ClaimAuthError: a RegistryError
    claims = [(c.group_id, int(c.nullifier), c.epoch) for c in body.claims]
    results = await run_in_threadpool(service_of(request).claim_nullifiers, relay, claims)
    return ClaimResponse.model_validate({"results": results})
