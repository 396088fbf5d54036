"""A relay whose registry answers garbage, and a relay hit by an unexpected exception.

- A registry (here a real HTTP server on loopback answering what a broken or hostile one
  could) that says "authorized" with a nullifier or epoch of the wrong type: the relay's
  :class:`RegistryAuthClient` takes it as an unreadable answer that may have spent the slot
  (``RemoteAuthorizationError``, ``may_be_spent``), and the relay answers 503
  ``authorization_unknown`` in the API's error JSON, not a bare 500.
- Any exception a handler did not expect is a JSON 500 ``internal`` (the registry's
  :class:`registry.web.middleware.ErrorGuardMiddleware`), and its message, which may hold a
  value, is not logged.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from registry.relay.app import RelaySettings, create_relay_app
from registry.relay.authorization import RegistryAuthClient, RemoteAuthorizationError
from tests.support.net import serve_app

AUTHORIZED = {"authorized": True, "reason": "ok", "nullifier": "12345", "epoch": 7}
GARBLED = [
    {**AUTHORIZED, "epoch": [7]},
    {**AUTHORIZED, "epoch": "7"},
    {**AUTHORIZED, "epoch": 7.5},
    {**AUTHORIZED, "epoch": -1},
    {**AUTHORIZED, "nullifier": "not a number"},
    {**AUTHORIZED, "nullifier": {"a": 1}},
    {**AUTHORIZED, "nullifier": "9" * 5000},
    {**AUTHORIZED, "reason": ["ok"]},
]


def _fake_registry(answer: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/authorize")
    def authorize() -> JSONResponse:
        return JSONResponse(answer)

    @app.get("/v1/health")
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app


def _send_body() -> dict[str, Any]:
    return {
        "mailbox": "ab" * 32,
        "pickup_hash": hashlib.sha256(b"s" * 16).hexdigest(),
        "blob": base64.b64encode(b"blob").decode(),
        "group_id": 0,
        # Schema-valid (the relay asks its authorizer only then); its points are not a proof.
        "proof": {"merkleTreeDepth": 1, "merkleTreeRoot": "1", "nullifier": "2", "message": "3", "scope": "4", "points": ["1"] * 8},
    }


def _relay_settings(data_dir: Path, registry_url: str) -> RelaySettings:
    return RelaySettings(
        data_dir=data_dir, auth_mode="registry", registry_url=registry_url, chain_id=31337,
        min_free_bytes=0, probe_interval=3600.0,
    )


@pytest.mark.parametrize("answer", GARBLED, ids=range(len(GARBLED)))
def test_a_garbled_authorization_is_an_error_that_may_have_spent_the_slot(answer: dict[str, Any]) -> None:
    with serve_app(_fake_registry(answer)) as url, RegistryAuthClient(url) as client:
        with pytest.raises(RemoteAuthorizationError) as caught:
            client.authorize({"merkleTreeDepth": 1}, 0, bytes(32))
    assert caught.value.may_be_spent
    assert "9999" not in str(caught.value)  # the registry's values are not echoed


def test_the_relay_answers_a_garbled_authorization_with_authorization_unknown(tmp_path: Path) -> None:
    with serve_app(_fake_registry(GARBLED[0])) as registry_url:
        with serve_app(create_relay_app(_relay_settings(tmp_path / "relay", registry_url))) as relay_url:
            r = httpx.post(f"{relay_url}/v1/blobs", json=_send_body(), timeout=30)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "authorization_unknown"
            assert httpx.get(f"{relay_url}/v1/health", timeout=30).status_code == 200


class _Broken:
    """An authorizer failing in a way no handler expects (a fault that cannot be produced
    for real once every known one is handled)."""

    def authorize(self, proof: Any, group_id: int, blob_digest: bytes) -> Any:
        raise RuntimeError("secret-value-0xdeadbeef")


def test_an_unexpected_exception_in_the_relay_is_a_json_500_and_only_its_type_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_relay_app(_relay_settings(tmp_path / "relay", "http://127.0.0.1:9"), authorizer=_Broken())
    with caplog.at_level(logging.INFO), serve_app(app) as url:
        r = httpx.post(f"{url}/v1/blobs", json=_send_body(), timeout=30)
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": {"code": "internal", "message": "internal error"}}
        assert httpx.get(f"{url}/v1/health", timeout=30).status_code == 200
    assert "RuntimeError" in caplog.text
    assert "deadbeef" not in caplog.text
