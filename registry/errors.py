"""The error contract of the registry (and the relay): one exception, one table.

A refusal is a :class:`RegistryError` with a machine-readable ``code``, a human ``message``
(naming the offending field; it may repeat a value the client itself sent, such as the
commitment a ``duplicate`` refers to, because it goes back only to that client and errors
are never logged) and the HTTP ``status`` it is
answered with. The status comes from :data:`STATUS`, the table docs/api.md ("Error codes")
shows (``tests/registry/web/test_api_docs.py`` checks they are equal). The HTTP layer
(:mod:`registry.web.errors`) renders it as ``{"error": {"code": ..., "message": ...}}``.

This module imports nothing of the service or the web layer: both import it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: HTTP status of each error code of the registry API (docs/api.md "Error codes").
STATUS: dict[str, int] = {
    # the request itself
    "malformed": 400,
    "duplicate_key": 400,
    "too_deep": 400,
    "invalid_commitment": 422,
    "request_timeout": 408,
    "too_large": 413,
    "too_many": 413,
    "rate_limited": 429,
    "not_found": 404,
    "method_not_allowed": 405,
    # operator token
    "unauthorized": 401,
    "forbidden": 403,
    "operator_disabled": 403,
    # groups, members, roots
    "unknown_group": 404,
    "not_member": 404,
    "unknown_root": 404,
    "duplicate": 409,
    "pending": 409,
    "backlog_full": 503,
    "index_stale": 503,
    # admission (docs/admission.md)
    "group_not_served": 403,
    "admission_required": 403,
    "admission_bad_scope": 403,
    "admission_scope_version_unsupported": 403,
    "admission_wrong_registry": 403,
    "admission_wrong_group": 403,
    "admission_wrong_round": 403,
    "admission_message_mismatch": 403,
    "admission_unknown_root": 403,
    "admission_expired_root": 403,
    "admission_invalid_proof": 403,
    "admission_used": 409,
    "invite_invalid": 403,
    "invite_expired": 403,
    "invite_used": 409,
    "admission_group_not_closed": 409,
    "admission_group_in_use": 409,
    # the evidence log (docs/evidence.md)
    "malformed_record": 400,
    "bad_signature": 422,
    "unknown_signer": 403,
    "wrong_chain": 422,
    "event_time_in_future": 422,
    "event_time_too_old": 422,
    "bad_address": 422,
    "configured": 409,
    "bad_tree_size": 404,
    "not_anchored": 409,
    # nullifier claims by relays (POST /v1/nullifiers/claim: the claim envelope)
    "unsigned_request": 401,
    "bad_envelope": 401,
    "stale_request": 401,
    "replayed_request": 401,
    "envelope_signature_invalid": 401,
    "unknown_relay": 403,
    # the relay (docs/relay.md): a federated relay's scope names a registry it does not trust
    "unknown_registry": 403,
    # the relay: the mailbox tag is held with another pickup hash; no room; the store failed
    "mailbox_conflict": 409,
    "insufficient_storage": 507,
    "store_failed": 503,
    # the relay: the send could not be judged now (the slot was not used, or may have been)
    "authorization_unavailable": 503,
    "nullifier_authority_unavailable": 503,
    "authorization_unknown": 503,
    # the ledger and the deployment
    "ledger_unavailable": 503,
    "ledger_error": 502,
    "not_deployed": 503,
    "not_configured": 503,
    "deployment_mismatch": 503,
    # the registry's own database (a shared PostgreSQL away, SQLite locked past its timeout)
    "database_unavailable": 503,
    # a request still open when the server's graceful shutdown ran out (registry and relay)
    "shutting_down": 503,
    # bugs
    "inconsistent_store": 500,
    "internal": 500,
}

#: The other status a code is answered with in documented cases (docs/api.md gives both):
#: ``malformed`` is 422 for a request that breaks the schema (the OpenAPI document), 400
#: for a schema-valid request the service finds inconsistent and for a bad Content-Length.
OTHER_STATUS: dict[str, int] = {"malformed": 422}

#: The code of an answer of the schema validator (registry) or the body checks (relay).
SCHEMA_ERROR = "malformed"
SCHEMA_STATUS = 422


#: HTTP status of a refused send authorization by its reason (docs/authorization.md; the
#: registry's ``POST /v1/authorize`` and a relay's ``POST /v1/blobs`` alike): 403 unless
#: named here. A ``malformed`` decision (the proof passed the request's shape checks, but
#: is no well-formed SemaphoreProof: a point off its curve) is such a 403: a request that
#: breaks the schema is 422 before any decision.
REFUSAL_STATUS: dict[str, int] = {
    "unknown_group": 404,
    "nullifier_reused": 409,
    "index_stale": 503,  # not a verdict on the proof: ask again once the index caught up
}


def refusal_status(reason: str) -> int:
    """The HTTP status of a send authorization refused for ``reason`` (:data:`REFUSAL_STATUS`)."""
    return REFUSAL_STATUS.get(reason, 403)


def status_of(code: str) -> int:
    """The HTTP status of ``code`` (:data:`STATUS`; 400 for a code it does not hold)."""
    return STATUS.get(code, 400)


class RegistryError(Exception):
    """A refusal: machine-readable ``code``, human ``message``, HTTP ``status`` (default:
    :func:`status_of` the code), extra response ``headers`` (e.g. ``Retry-After``) and
    extra top-level ``fields`` of the body (a refused authorization's decision).
    Raised by the service, the HTTP layer, the evidence routes and the relay alike."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else status_of(code)
        self.headers = dict(headers) if headers else None
        self.fields = dict(fields) if fields else {}

    def __repr__(self) -> str:
        return f"RegistryError({self.code!r}, {self.message!r}, status={self.status})"

    def body(self) -> bytes:
        """:meth:`to_dict` as compact JSON bytes (for ASGI code that answers by hand)."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the answer: ``{"error": {"code", "message"}}`` and the ``fields``."""
        return {**self.fields, "error": {"code": self.code, "message": self.message}}


def error_body(code: str, message: str) -> bytes:
    """The JSON body of the error answer ``code`` with ``message``."""
    return RegistryError(code, message).body()
