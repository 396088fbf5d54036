"""One rate limit everywhere (a sender gets no more slots by spreading sends over relays):
relays checking locally claim each
nullifier at the home registry (``--nullifier-authority``), which also answers
``POST /v1/authorize``: a proof is accepted once across all relays, in either mode.

Real parts: Anvil, the registry service and app, relays served over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.relay.evidence import KEY_FILE
from registry.service.nullifier_claims import sign_envelope
from registry.web.app import create_app
from tests.registry.relay.support import relay_config_values, running_relay, send_body
from tests.support.net import free_port, serve_app
from tests.support.registry import AUTH, Registry, anchored_member, running_registry
from zk.evidence.record import RecordSigner
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RelayScope, blob_message, epoch_at
from zk.tree import MerkleProof

KEY_A = bytes.fromhex("a1" * 32)
KEY_B = bytes.fromhex("b2" * 32)
KEY_UNTRUSTED = bytes.fromhex("c3" * 32)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The groups' home registry, trusting the relay keys A and B."""
    keys = [RecordSigner(KEY_A).address, RecordSigner(KEY_B).address]
    with running_registry(tmp_path_factory.mktemp("authority"), relay_keys=keys) as reg:
        yield reg


@pytest.fixture(scope="module")
def member(home: Registry) -> tuple[Identity, MerkleProof]:
    return anchored_member(home, "authority-member")


def _relay(tmp: Path, name: str, key: bytes, home: Registry, **overrides: Any) -> Any:
    data = tmp / name
    data.mkdir(parents=True)
    (data / KEY_FILE).write_text(key.hex() + "\n")
    return running_relay(data, home.settings.rpc_url or "", home.manifest, **overrides)


def _send(member: tuple[Identity, MerkleProof], home: Registry, blob: bytes, slot: int) -> tuple[SemaphoreProof, dict[str, Any]]:
    who, merkle = member
    epoch = epoch_at(home.clock(), home.settings.epoch_length)
    scope = RelayScope.of(home.deployment, 0, epoch, slot).encode()
    proof = generate_proof(who, merkle, blob_message(hashlib.sha256(blob).digest()), scope)
    return proof, send_body(secrets.token_bytes(32), b"capability", blob, 0, proof)


def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as http:
        return http.post("/v1/blobs", json={**body, "mailbox": secrets.token_hex(32)})


def test_one_proof_is_accepted_once_across_local_relays_and_the_registry(
    home: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path
) -> None:
    proof, body = _send(member, home, b"to two local relays", 0)
    with _relay(tmp_path, "a", KEY_A, home, nullifier_authority=home.url) as (url_a, relay_a, _), _relay(
        tmp_path, "b", KEY_B, home, nullifier_authority=home.url
    ) as (url_b, relay_b, _):
        statuses = [_post(url, body) for url in (url_a, url_b, url_a)]
        assert [r.status_code for r in statuses] == [201, 409, 409], [r.text for r in statuses]
        assert {r.json()["error"]["code"] for r in statuses[1:]} == {"nullifier_reused"}
        assert relay_a.store.count() + relay_b.store.count() == 1
    # The registry's own authorization shares the store.
    with home.client() as c:
        r = c.post("/v1/authorize", json={"group_id": 0, "proof": proof.to_dict(), "blob_digest": hashlib.sha256(b"to two local relays").hexdigest()})
        assert r.status_code == 409 and r.json()["reason"] == "nullifier_reused"


def test_registry_mode_and_local_mode_relays_accept_a_proof_once(
    home: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path
) -> None:
    """The issue's bug: one proof was accepted by a local relay and a registry-mode relay (201, 201)."""
    first_registry = _send(member, home, b"registry first", 1)[1]
    first_local = _send(member, home, b"local first", 2)[1]
    with _relay(tmp_path, "local", KEY_A, home, nullifier_authority=home.url) as (local, _, _), _relay(
        tmp_path, "remote", KEY_B, home, auth_mode="registry", registry_url=home.url
    ) as (remote, _, _):
        assert [_post(u, first_registry).status_code for u in (remote, local)] == [201, 409]
        assert [_post(u, first_local).status_code for u in (local, remote)] == [201, 409]


def _claim(home: Registry, key: bytes, claims: list[dict[str, Any]], *, at: float | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    data = json.dumps({"claims": claims}).encode()
    if headers is None:
        when = int(home.clock() if at is None else at)
        headers = sign_envelope(RecordSigner(key), home.deployment, data, when, secrets.token_hex(16)).headers()
    with home.client() as c:
        return c.post("/v1/nullifiers/claim", content=data, headers={"Content-Type": "application/json", **headers})


def test_claim_endpoint_results_and_refusals(home: Registry) -> None:
    epoch = epoch_at(home.clock(), home.settings.epoch_length)
    n = secrets.randbelow(2**200)
    claims = [
        {"group_id": 0, "nullifier": str(n), "epoch": epoch},
        {"group_id": 0, "nullifier": str(n + 1), "epoch": epoch - 5},
        {"group_id": 77, "nullifier": str(n + 2), "epoch": epoch},
    ]
    r = _claim(home, KEY_A, claims)
    assert r.status_code == 200, r.text
    assert r.json() == {"results": ["claimed", "wrong_epoch", "unknown_group"]}
    # Idempotent for its relay (a retry after a lost answer), reused for anyone else.
    assert _claim(home, KEY_A, claims[:1]).json() == {"results": ["claimed"]}
    assert _claim(home, KEY_B, claims[:1]).json() == {"results": ["reused"]}

    def refused(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["error"]["code"]

    fresh = [{"group_id": 0, "nullifier": str(n + 3), "epoch": epoch}]
    assert refused(_claim(home, KEY_A, fresh, headers={})) == (401, "unsigned_request")
    assert refused(_claim(home, KEY_UNTRUSTED, fresh)) == (403, "unknown_relay")
    assert refused(_claim(home, KEY_A, fresh, at=home.clock() - 3600)) == (401, "stale_request")
    data = json.dumps({"claims": fresh}).encode()
    captured = sign_envelope(RecordSigner(KEY_B), home.deployment, data, int(home.clock()), secrets.token_hex(16)).headers()
    assert _claim(home, KEY_B, fresh, headers=captured).json() == {"results": ["claimed"]}
    assert refused(_claim(home, KEY_B, fresh, headers=captured)) == (401, "replayed_request")
    # A key the operator adds at run time may claim (the evidence log's relay keys).
    address = RecordSigner(KEY_UNTRUSTED).address
    with home.client() as c:
        assert c.put(f"/v1/evidence/relays/{address}", headers=AUTH).status_code in (200, 201)
    try:
        assert _claim(home, KEY_UNTRUSTED, fresh).json() == {"results": ["reused"]}
    finally:
        with home.client() as c:
            c.delete(f"/v1/evidence/relays/{address}", headers=AUTH)


def test_authority_down_refuses_with_retry_after_then_accepts(
    home: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path
) -> None:
    port = free_port()
    authority = f"http://127.0.0.1:{port}"
    _, body = _send(member, home, b"while the home registry is away", 3)
    with _relay(tmp_path, "edge", KEY_B, home, nullifier_authority=authority) as (url, relay, _):
        r = _post(url, body)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "nullifier_authority_unavailable"
        assert int(r.headers["Retry-After"]) >= 1
        assert relay.store.count() == 0
        # The home registry comes back at its address: the same proof is accepted, once.
        with serve_app(create_app(home.service, home.settings), port=port):
            assert _post(url, body).status_code == 201
            assert _post(url, body).status_code == 409
        assert relay.store.count() == 1


def test_a_relay_key_the_home_registry_does_not_trust_is_named_in_the_log(
    home: Registry, member: tuple[Identity, MerkleProof], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A configuration error, not an outage: the relay's log says which key to add where
    (and never a proxy's credentials written into the authority's URL)."""
    _, body = _send(member, home, b"from a relay the registry does not know", 4)
    with_credentials = home.url.replace("http://", "http://proxyuser:s3cretpw@", 1)
    with caplog.at_level("WARNING", logger="registry.relay.nullifier_authority"):
        with _relay(tmp_path, "stranger", KEY_UNTRUSTED, home, nullifier_authority=with_credentials) as (url, relay, _):
            r = _post(url, body)
            assert r.status_code == 503, r.text
            assert relay.store.count() == 0
    address = RecordSigner(KEY_UNTRUSTED).address
    lines = [rec.getMessage() for rec in caplog.records if "does not trust this relay's key" in rec.getMessage()]
    assert lines and address in lines[0] and home.url.rstrip("/") in lines[0] and "--relay-key" in lines[0]
    assert all("s3cretpw" not in rec.getMessage() for rec in caplog.records)


def test_config_key_and_local_mode_only(tmp_path: Path) -> None:
    """``nullifier_authority`` in a config file reaches the settings (docs/settings.md); it
    is refused with registry authorization, where the registry claims itself."""
    from registry.relay.config import relay_settings

    path = tmp_path / "relay.toml"
    path.write_text('nullifier_authority = "http://127.0.0.1:8080"\n')
    values, extra = relay_config_values(tmp_path, path, nullifier_authority=None)
    assert relay_settings(values, extra, {}).nullifier_authority == "http://127.0.0.1:8080"
    values.update(auth="registry", registry_url="http://127.0.0.1:8080")
    with pytest.raises(ValueError, match="nullifier_authority"):
        relay_settings(values, extra, {})
