"""Regions end to end (docs/regions.md): two regional registries on two Anvils with distinct chain
ids, three federated relays (us-east, eu-west, ap-southeast) trusting both, local and
registry authorization mixed.

- cross-region sends are delivered exactly once, and each blob's evidence goes to its
  home registry's log with that registry's chain id and the relay's region;
- the same proof at three relays is accepted exactly once;
- a proof of region A's group 0 is refused where A is not trusted (``unknown_registry``)
  and by a relay or registry of region B (``wrong_registry``);
- with the home registry down the relay answers 503 with ``Retry-After`` and accepts
  the same proof once the registry is back.

Real parts only: Anvil, the registry services and apps, relays served over loopback."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.relay.app import Relay, RelaySettings, create_relay_app
from registry.relay.evidence import KEY_FILE
from registry.relay.trust_list import TrustedRegistry, TrustList
from registry.web.app import create_app
from tests.registry.relay.support import running_relay, send_body
from tests.support.net import free_port, serve_app
from tests.support.registry import Registry, anchored_member, running_registry
from tests.support.wait import wait_until
from zk.evidence.record import RecordSigner
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RelayScope, blob_message, epoch_at
from zk.tree import MerkleProof

KEYS = {name: bytes([n]) * 32 for n, name in enumerate(("us-east", "eu-west", "ap-southeast", "edge", "lonely", "confused"), 0x21)}
Member = tuple[Identity, MerkleProof]


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    """eu-central on chain 31337 and gcc on chain 31338, each trusting every relay key."""
    keys = [RecordSigner(k).address for k in KEYS.values()]
    with running_registry(tmp_path_factory.mktemp("eu-central"), ["--chain-id", "31337"], relay_keys=keys) as a, running_registry(
        tmp_path_factory.mktemp("gcc"), ["--chain-id", "31338"], relay_keys=keys
    ) as b:
        assert a.deployment.chain_id != b.deployment.chain_id
        yield a, b


@pytest.fixture(scope="module")
def members(regions: tuple[Registry, Registry]) -> tuple[Member, Member]:
    a, b = regions
    return anchored_member(a, "alice-of-eu-central"), anchored_member(b, "bob-of-gcc")


def entry(region: str, reg: Registry, auth: str, registry_url: str | None = None) -> TrustedRegistry:
    return TrustedRegistry(
        region=region, ref=reg.deployment, registry_url=registry_url or reg.url, rpc_url=reg.settings.rpc_url,
        auth=auth,  # type: ignore[arg-type]
        send_groups=(0,), operator=reg.manifest.deployer,
    )


@contextlib.contextmanager
def federated_relay(data: Path, region: str, trust: TrustList, key: bytes) -> Iterator[tuple[str, Relay]]:
    data.mkdir(parents=True, exist_ok=True)
    (data / KEY_FILE).write_text(key.hex() + "\n")
    settings = RelaySettings(
        data_dir=data, region=region, trust_list=trust, evidence_batch_max_wait=0.0, evidence_interval=0.05,
        probe_interval=0.2,
    )
    app = create_relay_app(settings)
    with serve_app(app) as url:
        yield url, app.state.relay


@pytest.fixture(scope="module")
def relays(regions: tuple[Registry, Registry], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, Relay]]]:
    """Three relays. us-east and eu-west check eu-central locally and ask gcc to authorize;
    ap-southeast the other way round: every proof meets both modes."""
    a, b = regions
    mixed = TrustList([entry("eu-central", a, "local"), entry("gcc", b, "registry")])
    swapped = TrustList([entry("eu-central", a, "registry"), entry("gcc", b, "local")])
    tmp = tmp_path_factory.mktemp("relays")
    with federated_relay(tmp / "us", "us-east", mixed, KEYS["us-east"]) as us, federated_relay(
        tmp / "eu", "eu-west", mixed, KEYS["eu-west"]
    ) as eu, federated_relay(tmp / "ap", "ap-southeast", swapped, KEYS["ap-southeast"]) as ap:
        yield {"us-east": us, "eu-west": eu, "ap-southeast": ap}


def prove(member: Member, reg: Registry, blob: bytes, slot: int) -> SemaphoreProof:
    who, merkle = member
    epoch = epoch_at(reg.clock(), reg.settings.epoch_length)
    scope = RelayScope.of(reg.deployment, 0, epoch, slot).encode()
    return generate_proof(who, merkle, blob_message(hashlib.sha256(blob).digest()), scope)


def post(url: str, blob: bytes, proof: SemaphoreProof, mailbox: bytes | None = None, capability: bytes = b"cap") -> httpx.Response:
    body = send_body(mailbox or secrets.token_bytes(32), capability, blob, 0, proof)
    with httpx.Client(base_url=url, timeout=60) as http:
        return http.post("/v1/blobs", json=body)


def pickup(url: str, mailbox: bytes, capability: bytes) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.get(f"/v1/mailboxes/{mailbox.hex()}", headers={"X-Pickup-Capability": capability.hex()})
        assert r.status_code == 200, r.text
        blobs: list[dict[str, Any]] = r.json()["blobs"]
        for blob in blobs:
            assert http.post(f"/v1/blobs/{blob['id']}/ack", headers={"X-Pickup-Capability": capability.hex()}).status_code == 200
        return blobs


def evidence(reg: Registry, evidence_id: str) -> httpx.Response:
    with reg.client() as c:
        return c.get(f"/v1/evidence/{evidence_id}")


def test_cross_region_sends_are_delivered_once_with_evidence_at_home(
    regions: tuple[Registry, Registry], members: tuple[Member, Member], relays: dict[str, tuple[str, Relay]]
) -> None:
    a, b = regions
    alice, bob = members
    (us_url, us), (ap_url, ap) = relays["us-east"], relays["ap-southeast"]
    for relay in (us, ap):
        wait_until(lambda: all(e.pending() == 0 for e in relay.emitters()), 30, "earlier records posted")
    before = {(id(relay), tag): e.sent for relay in (us, ap) for tag, e in relay.home_evidence.items()}
    # Bob (gcc) holds a mailbox at us-east, Alice (eu-central) one at ap-southeast.
    to_bob, to_alice = secrets.token_bytes(32), secrets.token_bytes(32)
    cap_bob, cap_alice = secrets.token_bytes(32), secrets.token_bytes(32)
    sent = {
        "alice": post(us_url, b"alice to bob", prove(alice, a, b"alice to bob", 0), to_bob, cap_bob),  # local at us-east
        "bob": post(ap_url, b"bob to alice", prove(bob, b, b"bob to alice", 0), to_alice, cap_alice),  # local at ap
    }
    assert {k: r.status_code for k, r in sent.items()} == {"alice": 201, "bob": 201}, [r.text for r in sent.values()]
    got_bob, got_alice = pickup(us_url, to_bob, cap_bob), pickup(ap_url, to_alice, cap_alice)
    assert [base64.b64decode(x["blob"]) for x in got_bob] == [b"alice to bob"]
    assert [base64.b64decode(x["blob"]) for x in got_alice] == [b"bob to alice"]
    assert pickup(us_url, to_bob, cap_bob) == [] and pickup(ap_url, to_alice, cap_alice) == []  # exactly once
    # Each acceptance record is in its home registry's log only: home chain id, relay region.
    for reg, other, response, region in ((a, b, sent["alice"], "us-east"), (b, a, sent["bob"], "ap-southeast")):
        evidence_id = response.json()["evidence_id"]
        wait_until(lambda: evidence(reg, evidence_id).status_code == 200, 30, "the acceptance record at home")
        record = evidence(reg, evidence_id).json()["record"]
        assert (record["chainId"], record["region"]) == (reg.deployment.chain_id, region)
        assert evidence(other, evidence_id).status_code == 404
    # Pickup and ack records follow the blob to its home: at us-east only eu-central's log
    # received records (acceptance, consignment, access), at ap-southeast only gcc's.
    for relay, home, away in ((us, a, b), (ap, b, a)):
        at_home, abroad = relay.home_evidence[home.deployment.tag], relay.home_evidence[away.deployment.tag]
        start = before[(id(relay), home.deployment.tag)]
        wait_until(lambda: at_home.sent - start == 3 and at_home.pending() == 0, 30, "three records at home")
        assert abroad.sent == before[(id(relay), away.deployment.tag)]


def test_the_same_proof_at_three_relays_is_accepted_once(
    regions: tuple[Registry, Registry], members: tuple[Member, Member], relays: dict[str, tuple[str, Relay]]
) -> None:
    a, b = regions
    alice, bob = members
    for member, reg, order in (
        (alice, a, ("us-east", "ap-southeast", "eu-west")),  # local, registry, local
        (bob, b, ("ap-southeast", "us-east", "eu-west")),  # local, registry, registry
    ):
        proof = prove(member, reg, b"once everywhere", 1)
        answers = [post(relays[name][0], b"once everywhere", proof) for name in order]
        assert [r.status_code for r in answers] == [201, 409, 409], [r.text for r in answers]
        assert {r.json()["error"]["code"] for r in answers[1:]} == {"nullifier_reused"}
    assert sum(relay.store.count() for _, relay in relays.values()) == 2


def test_a_proof_of_one_region_is_refused_where_its_registry_is_not_trusted(
    regions: tuple[Registry, Registry], members: tuple[Member, Member], tmp_path: Path
) -> None:
    a, b = regions
    alice, _ = members
    proof = prove(alice, a, b"group 0 of eu-central", 2)
    only_gcc = TrustList([entry("gcc", b, "local")])
    with federated_relay(tmp_path / "lonely", "us-east", only_gcc, KEYS["lonely"]) as (url, relay):
        r = post(url, b"group 0 of eu-central", proof)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "unknown_registry")
        assert relay.store.count() == 0
    # Presented as gcc's group 0: to a single-registry relay of gcc, and to gcc itself.
    data = tmp_path / "gcc-only"
    data.mkdir()
    with running_relay(data, b.settings.rpc_url or "", b.manifest, send_groups=(0,), operator=b.manifest.deployer) as (url, _, _):
        r = post(url, b"group 0 of eu-central", proof)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "wrong_registry")
    with b.client() as c:
        digest = hashlib.sha256(b"group 0 of eu-central").hexdigest()
        r = c.post("/v1/authorize", json={"group_id": 0, "proof": proof.to_dict(), "blob_digest": digest})
        assert (r.status_code, r.json()["reason"]) == (403, "wrong_registry")
    # Nothing was spent: eu-central still takes the proof.
    with a.client() as c:
        digest = hashlib.sha256(b"group 0 of eu-central").hexdigest()
        r = c.post("/v1/authorize", json={"group_id": 0, "proof": proof.to_dict(), "blob_digest": digest})
        assert r.status_code == 200, r.text


def test_home_registry_down_refuses_with_retry_after_then_accepts(
    regions: tuple[Registry, Registry], members: tuple[Member, Member], tmp_path: Path
) -> None:
    """eu-central checked locally (its registry claims the nullifier), gcc asked to
    authorize: both registries away at first, then back at their addresses."""
    a, b = regions
    alice, bob = members
    port_a, port_b = free_port(), free_port()
    trust = TrustList([
        entry("eu-central", a, "local", f"http://127.0.0.1:{port_a}"),
        entry("gcc", b, "registry", f"http://127.0.0.1:{port_b}"),
    ])
    proof_a, proof_b = prove(alice, a, b"while away", 3), prove(bob, b, b"while away", 3)
    with federated_relay(tmp_path / "edge", "eu-west", trust, KEYS["edge"]) as (url, relay):
        r_a, r_b = post(url, b"while away", proof_a), post(url, b"while away", proof_b)
        assert (r_a.status_code, r_a.json()["error"]["code"]) == (503, "nullifier_authority_unavailable")
        assert (r_b.status_code, r_b.json()["error"]["code"]) == (503, "authorization_unavailable")
        assert int(r_a.headers["Retry-After"]) >= 1 and int(r_b.headers["Retry-After"]) >= 1
        assert relay.store.count() == 0

        def health() -> dict[str, Any]:
            return dict(httpx.get(f"{url}/v1/health", timeout=10).json())

        wait_until(lambda: health()["upstreams"] == {"eu-central": False, "gcc": False}, 30, "both regions down")
        assert "region_unreachable" in health()["reasons"]
        with serve_app(create_app(a.service, a.settings), port=port_a), serve_app(
            create_app(b.service, b.settings), port=port_b
        ):
            assert [post(url, b"while away", p).status_code for p in (proof_a, proof_b)] == [201, 201]
            assert [post(url, b"while away", p).status_code for p in (proof_a, proof_b)] == [409, 409]
            wait_until(lambda: health()["upstreams"] == {"eu-central": True, "gcc": True}, 30, "both regions back")
        assert relay.store.count() == 2


def test_a_trust_list_entry_pointing_at_another_chain_verifies_nothing(
    regions: tuple[Registry, Registry], members: tuple[Member, Member], tmp_path: Path
) -> None:
    """Both registries sit at the same contract address (one deployer, two chains): an
    entry whose rpc_url is gcc's node must not verify eu-central's proofs against gcc's roots."""
    a, b = regions
    alice, _ = members
    assert a.deployment.contract == b.deployment.contract
    confused = TrustedRegistry(
        region="eu-central", ref=a.deployment, registry_url=a.url, rpc_url=b.settings.rpc_url,
        send_groups=(0,), operator=a.manifest.deployer,
    )
    proof = prove(alice, a, b"to the wrong ledger", 4)
    with federated_relay(tmp_path / "confused", "us-east", TrustList([confused]), KEYS["confused"]) as (url, relay):
        r = post(url, b"to the wrong ledger", proof)
        assert (r.status_code, r.json()["error"]["code"]) == (503, "authorization_unavailable")
        wait_until(lambda: relay.upstreams() == {"eu-central": False}, 30, "the region marked down")
        assert relay.store.count() == 0


def test_relay_lists_the_registries_it_trusts(
    regions: tuple[Registry, Registry], relays: dict[str, tuple[str, Relay]]
) -> None:
    a, b = regions
    url, _ = relays["eu-west"]
    listed = httpx.get(f"{url}/v1/registries", timeout=10).json()
    assert listed == {
        "region": "eu-west",
        "registries": [
            {"region": "eu-central", "chain_id": 31337, "contract": a.deployment.contract, "registry_url": a.url},
            {"region": "gcc", "chain_id": 31338, "contract": b.deployment.contract, "registry_url": b.url},
        ],
    }
