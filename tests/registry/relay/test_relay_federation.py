"""Federated relays without a ledger (registry/relay/federation.py, registry/relay/app.py):
routing by the scope's registry tag, the refusals that need no upstream, configuration
conflicts, ``GET /v1/registries``. The end-to-end behaviour with two real registries is
tests/registry/test_e2e_regions.py."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.cli import app as cli_app
from registry.relay.app import Relay, RelaySettings, create_relay_app
from registry.relay.config import check_auth, load_relay_config, relay_settings, with_config
from registry.relay.federation import FederatedAuthorizer, RegionRoute, UnknownRegistry, nullifiers_file, scope_home
from registry.relay.trust_list import TrustedRegistry, TrustList, render_trust_list
from registry.service.authorization import Decision, Reason
from tests.registry.relay.support import send_body
from tests.support.cli import ZKID, invoke, stop_process, wait_serving
from tests.support.net import free_port, serve_app
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message
from zk.scope_layout import pack_scope
from zk.tree import LeanIMT

REF_A = RegistryRef(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
REF_B = RegistryRef(31338, "0x5FbDB2315678afecb367f032d93F642f64180aa3")  # same address, other chain
REF_C = RegistryRef(1, "0x" + "cc" * 20)
BLOB = b"a federated blob"
OPERATOR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.fixture(scope="module")
def proof() -> SemaphoreProof:
    """One real proof (of group 0 of REF_A); other scopes are swapped into its JSON."""
    who = Identity("federation-unit")
    tree = LeanIMT(leaves=[who.commitment])
    scope = RelayScope.of(REF_A, 0, 1, 0).encode()
    return generate_proof(who, tree.generate_proof(0), blob_message(hashlib.sha256(BLOB).digest()), scope)


def with_scope(proof: SemaphoreProof, scope: int) -> dict[str, Any]:
    return {**proof.to_dict(), "scope": str(scope)}


class Recording:
    """An authorizer that answers one reason and remembers whom it was asked about."""

    def __init__(self, reason: Reason) -> None:
        self.reason = reason
        self.asked = 0

    def authorize(self, proof: Any, group_id: int, blob_digest: bytes) -> Decision:
        self.asked += 1
        return Decision(self.reason is Reason.OK, self.reason)


def entry(region: str, ref: RegistryRef, auth: str = "registry", url: str = "http://127.0.0.1:9", **kw: Any) -> TrustedRegistry:
    return TrustedRegistry(region=region, ref=ref, registry_url=url, auth=auth, **kw)  # type: ignore[arg-type]


def test_routes_each_proof_to_the_registry_its_scope_names(proof: SemaphoreProof) -> None:
    a, b = Recording(Reason.OK), Recording(Reason.NULLIFIER_REUSED)
    routes = {REF_A.tag: RegionRoute(entry("a", REF_A), a), REF_B.tag: RegionRoute(entry("b", REF_B), b)}
    fed = FederatedAuthorizer(routes)
    digest = hashlib.sha256(BLOB).digest()
    assert fed.authorize(with_scope(proof, RelayScope.of(REF_A, 0, 1, 0).encode()), 0, digest).reason is Reason.OK
    assert fed.authorize(with_scope(proof, RelayScope.of(REF_B, 0, 1, 0).encode()), 0, digest).reason is Reason.NULLIFIER_REUSED
    assert (a.asked, b.asked) == (1, 1)
    with pytest.raises(UnknownRegistry):
        fed.authorize(with_scope(proof, RelayScope.of(REF_C, 0, 1, 0).encode()), 0, digest)
    # Scopes that name no registry are refused as any verifier refuses them, asking no one.
    lze1 = pack_scope(b"LZE1", (("group", 0, 8), ("epoch", 1, 8), ("slot", 0, 4)), ValueError)
    assert fed.authorize(with_scope(proof, lze1), 0, digest).reason is Reason.SCOPE_VERSION_UNSUPPORTED
    assert fed.authorize(with_scope(proof, 12345), 0, digest).reason is Reason.BAD_SCOPE
    assert fed.authorize({"scope": "1"}, 0, digest).reason is Reason.MALFORMED
    assert (a.asked, b.asked) == (1, 1)


def test_scope_home_reads_the_packed_tag(proof: SemaphoreProof) -> None:
    assert scope_home(proof) == REF_A.tag
    assert scope_home(with_scope(proof, RelayScope.of(REF_B, 7, 1, 3).encode())) == REF_B.tag != REF_A.tag
    assert nullifiers_file(REF_A.tag) != nullifiers_file(REF_B.tag)  # group 0 of each: two stores


@pytest.mark.parametrize(
    "conflict",
    [
        {"rpc_url": "http://127.0.0.1:8545"},
        {"registry_url": "http://127.0.0.1:8080"},
        {"nullifier_authority": "http://127.0.0.1:8080"},
        {"send_groups": (0,)},
        {"evidence_url": "http://127.0.0.1:8080"},
        {"auth_mode": "registry", "registry_url": "http://127.0.0.1:8080"},
    ],
)
def test_a_trust_list_conflicts_with_the_single_registry_settings(tmp_path: Path, conflict: dict[str, Any]) -> None:
    trust = TrustList([entry("a", REF_A)])
    with pytest.raises(ValueError, match="trust_list conflicts with"):
        RelaySettings(data_dir=tmp_path, trust_list=trust, **conflict)


def test_local_entry_with_send_groups_needs_its_operator(tmp_path: Path) -> None:
    """Fail closed: without the operator, anyone's group with a listed id would be served."""
    trust = TrustList([entry("a", REF_A, "local", rpc_url="http://127.0.0.1:9", send_groups=(0,))])
    with pytest.raises(ValueError, match=r"needs operator = \"0x\.\.\.\" in its \[\[registry\]\] \(.*deployer"):
        Relay(RelaySettings(data_dir=tmp_path, trust_list=trust))


FLAGS: dict[str, Any] = {
    "data_dir": ".", "region": "us-east", "auth": "local", "rpc_url": None, "manifest": None, "registry_url": None,
    "evidence_url": None, "chain_id": None, "keystore": None, "keystore_password_env": "ZKID_RELAY_PASSWORD",
    "max_body_bytes": 1 << 20, "body_timeout": 30.0, "retention_hours": 168, "rate_limit": 120, "send_group": None,
    "operator": None, "nullifiers": None, "nullifier_authority": None, "trust_list": None,
}


def test_config_key_trust_list_and_its_conflicts(tmp_path: Path) -> None:
    listed = tmp_path / "trust.toml"
    listed.write_text(render_trust_list([entry("eu-central", REF_A), entry("gcc", REF_B)]))
    config = tmp_path / "relay.toml"
    config.write_text(f'trust_list = "{listed}"\n')
    values, extra = with_config({**FLAGS, "data_dir": str(tmp_path)}, load_relay_config(config), lambda name: True)
    check_auth(values)
    settings = relay_settings(values, extra, {})
    assert settings.trust_list is not None and settings.trust_list.regions == ("eu-central", "gcc")
    with pytest.raises(ValueError, match="--trust-list conflicts with --rpc-url"):
        check_auth({**values, "rpc_url": "http://127.0.0.1:8545"})
    with pytest.raises(ValueError, match="--trust-list conflicts with --auth"):
        check_auth({**values, "auth": "registry"})


def test_cli_trust_list_conflict_and_bad_file_are_one_line(tmp_path: Path) -> None:
    listed = tmp_path / "trust.toml"
    listed.write_text(render_trust_list([entry("eu-central", REF_A)]))
    out = invoke(cli_app, ["relay", "--trust-list", str(listed), "--rpc-url", "http://127.0.0.1:8545", "--data-dir", str(tmp_path / "r")])
    assert out.exit_code != 0
    assert out.stderr.strip().count("\n") == 0 and "--trust-list conflicts with --rpc-url" in out.stderr
    listed.write_text("[[registry]]\nregion = 'x'\n")
    out = invoke(cli_app, ["relay", "--trust-list", str(listed), "--data-dir", str(tmp_path / "r")])
    assert out.exit_code != 0
    assert out.stderr.strip().count("\n") == 0 and "cannot start the relay" in out.stderr


@pytest.fixture
def federated(tmp_path: Path) -> Iterator[tuple[str, Relay]]:
    """A relay trusting two registries that are away (registry mode: no ledger needed)."""
    port = free_port()
    trust = TrustList([
        entry("eu-central", REF_A, url=f"http://127.0.0.1:{port}", evidence=False),
        entry("gcc", REF_B, url=f"http://127.0.0.1:{port}", evidence=False),
    ])
    app = create_relay_app(RelaySettings(data_dir=tmp_path / "relay", region="ap-southeast", trust_list=trust))
    with serve_app(app) as url:
        yield url, app.state.relay


def test_unknown_registry_is_refused_before_anything_is_asked(federated: tuple[str, Relay], proof: SemaphoreProof) -> None:
    url, relay = federated
    body = send_body(secrets.token_bytes(32), b"cap", BLOB, 0, proof)
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/blobs", json={**body, "proof": with_scope(proof, RelayScope.of(REF_C, 0, 1, 0).encode())})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "unknown_registry")
        # A trusted registry that is away: 503 with Retry-After, nothing stored.
        r = http.post("/v1/blobs", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (503, "authorization_unavailable")
        assert int(r.headers["Retry-After"]) >= 1
        listed = http.get("/v1/registries").json()
        health = http.get("/v1/health").json()
    assert relay.store.count() == 0
    assert listed["region"] == "ap-southeast"
    assert [(r["region"], r["chain_id"], r["contract"]) for r in listed["registries"]] == [
        ("eu-central", 31337, REF_A.contract), ("gcc", 31338, REF_B.contract),
    ]
    assert health["auth_mode"] == "federated" and set(health["upstreams"]) == {"eu-central", "gcc"}
    assert health["upstreams"]["eu-central"] is False  # the failed send said so


def test_zkid_relay_serves_a_trust_list_from_its_config_file(tmp_path: Path) -> None:
    """A real ``zkid relay`` process: the config key ``trust_list``, the ``trusts:`` lines at
    start and ``GET /v1/registries``."""
    listed = tmp_path / "trust.toml"
    listed.write_text(render_trust_list([entry("eu-central", REF_A, evidence=False), entry("gcc", REF_B, evidence=False)]))
    config = tmp_path / "relay.toml"
    config.write_text(f'trust_list = "{listed}"\nregion = "us-east"\n')
    port = free_port()
    proc = subprocess.Popen(
        [*ZKID, "relay", "--config", str(config), "--data-dir", str(tmp_path / "relay"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_serving(proc, port, "zkid relay")
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/registries", timeout=10).json()
    finally:
        stop_process(proc)
    assert answer["region"] == "us-east"
    assert [r["region"] for r in answer["registries"]] == ["eu-central", "gcc"]
    assert proc.returncode == 0


def test_a_lost_per_registry_nullifier_store_stops_the_relay(tmp_path: Path) -> None:
    """Each locally checked registry has its own store; losing one would let this relay
    accept its spent proofs again (the registry answers this relay's repeated claim
    ``claimed``), so the relay refuses to start, as for ``nullifiers.sqlite``."""
    from registry.storage.sqlite import StoreError

    trust = TrustList([entry("eu-central", REF_A, "local", rpc_url="http://127.0.0.1:9", send_groups=(0,), operator=OPERATOR, evidence=False)])
    Relay(RelaySettings(data_dir=tmp_path, trust_list=trust)).close()
    assert (tmp_path / nullifiers_file(REF_A.tag)).exists()
    (tmp_path / nullifiers_file(REF_A.tag)).unlink()
    with pytest.raises(StoreError, match=nullifiers_file(REF_A.tag)):
        Relay(RelaySettings(data_dir=tmp_path, trust_list=trust))


def test_registries_never_publish_credentials_of_a_registry_url(tmp_path: Path) -> None:
    """A trust list's ``registry_url`` may carry a proxy's credentials; ``GET /v1/registries``
    (public) published them as written."""
    port = free_port()
    secret_url = f"http://operator:s3cret@127.0.0.1:{port}/base?token=t0ken#frag"
    trust = TrustList([entry("eu-central", REF_A, url=secret_url, evidence=False)])
    app = create_relay_app(RelaySettings(data_dir=tmp_path / "relay", region="ap-southeast", trust_list=trust))
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        listed = http.get("/v1/registries")
        health = http.get("/v1/health")
    assert listed.json()["registries"][0]["registry_url"] == f"http://127.0.0.1:{port}/base"
    for text in (listed.text, health.text):
        assert "s3cret" not in text and "operator" not in text and "t0ken" not in text
