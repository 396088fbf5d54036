"""Admission policies (registry/service/admission.py, docs/admission.md) and send groups
on a real registry: real Anvil, real service and HTTP server, real proofs (Python
and the JS SDK), a real local-mode relay."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client.api import RegistryClient, RegistryClientError, build_admission_proof
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.relay.authorization import LocalAuthorizer
from tests.jsbridge import run_js
from tests.support.node import needs_node
from tests.support.registry import OPERATOR_TOKEN, Registry
from tests.support.cli import run_zkid
from tests.registry.relay.support import running_relay
from zk.admission_scope import AdmissionScope
from zk.identity import Identity
from zk.identity_file import encrypt_identity
from zk.proof import generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message, epoch_at
from zk.tree import LeanIMT, MerkleProof

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture(scope="module")
def http(registry: Registry) -> Iterator[httpx.Client]:
    with registry.client() as client:
        yield client


def _create(http: httpx.Client, **admission: Any) -> int:
    body = {"admission": admission} if admission else {}
    r = http.post("/v1/groups", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return int(r.json()["group_id"])


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def _register(http: httpx.Client, group: int, commitment: int, **extra: Any) -> httpx.Response:
    return http.post(f"/v1/groups/{group}/members", json={"commitments": [str(commitment)], **extra})


def _merkle(http: httpx.Client, group: int, commitment: int) -> MerkleProof:
    r = http.get(f"/v1/groups/{group}/proofs/{commitment}")
    assert r.status_code == 200, r.text
    return MerkleProof.from_dict(r.json()["merkle_proof"])


@pytest.fixture(scope="module")
def zk_groups(registry: Registry, http: httpx.Client) -> tuple[int, int, list[Identity]]:
    """An admission group A (closed: only the operator writes it, e.g. an account service
    after checking a person), a zk group G admitting from A, and three checked persons."""
    group_a = _create(http, policy="closed")
    group_g = _create(http, policy="zk", admission_group=group_a)
    persons = [Identity(f"admission-person-{i}") for i in range(3)]
    # Nobody but the operator writes the admission group.
    _error(_register(http, group_a, persons[0].commitment), 403, "admission_required")
    r = http.post(
        f"/v1/groups/{group_a}/members", json={"commitments": [str(p.commitment) for p in persons]}, headers=AUTH
    )
    assert r.status_code == 202, r.text
    registry.wait_included(group_a, [p.commitment for p in persons])
    registry.wait_root(group_a, LeanIMT(leaves=[p.commitment for p in persons]).root)
    return group_a, group_g, persons


def test_zk_admission(registry: Registry, http: httpx.Client, zk_groups: tuple[int, int, list[Identity]]) -> None:
    group_a, group_g, persons = zk_groups
    info = http.get(f"/v1/groups/{group_g}").json()
    assert info["admission"] == {"policy": "zk", "admission_group": group_a, "round": 0, "send": True}
    assert http.get(f"/v1/groups/{group_a}").json()["admission"]["send"] is False
    outbox = registry.service.outbox
    new = [Identity(f"admission-new-{i}").commitment for i in range(8)]
    path = [_merkle(http, group_a, p.commitment) for p in persons]

    def proof(who: int, message: int, group: int = group_g, round_: int = 0, home: RegistryRef | None = None) -> dict[str, Any]:
        home = registry.deployment if home is None else home
        return build_admission_proof(persons[who], path[who], group, round_, message, registry=home).to_dict()

    # LZA1 (no registry tag), as a client from before LZA2 made it: refused by its version.
    lza1 = int.from_bytes(b"LZA1" + group_g.to_bytes(8, "big") + bytes(20), "big")
    old = generate_proof(persons[1], path[1], new[2], lza1).to_dict()
    # The same admission group and round at another deployment (chain id differs).
    elsewhere = RegistryRef(registry.deployment.chain_id + 1, registry.deployment.contract)

    # A valid admission proof registers C.
    first = proof(0, new[0])
    r = _register(http, group_g, new[0], admission_proof=first)
    assert r.status_code == 202 and r.json()["members"][0]["status"] == "pending", r.text

    refusals: list[tuple[str, int, dict[str, Any], int, str]] = [
        # The same admission credential again in the same round, for another C.
        ("same credential, same round", new[1], proof(0, new[1]), 409, "admission_used"),
        ("scope of another group", new[2], proof(1, new[2], group=group_g + 1000), 403, "admission_wrong_group"),
        ("LZA1 scope", new[2], old, 403, "admission_scope_version_unsupported"),
        ("scope of another registry", new[2], proof(1, new[2], home=elsewhere), 403, "admission_wrong_registry"),
        ("scope of another round", new[2], proof(1, new[2], round_=1), 403, "admission_wrong_round"),
        ("a proof for another C", new[3], proof(1, new[2]), 403, "admission_message_mismatch"),
    ]
    outsider = Identity("admission-outsider")
    foreign_tree = LeanIMT(leaves=[*(p.commitment for p in persons), outsider.commitment])
    non_member = build_admission_proof(outsider, foreign_tree.generate_proof(3), group_g, 0, new[2], registry=registry.deployment).to_dict()
    refusals.append(("non-member", new[2], non_member, 403, "admission_unknown_root"))
    forged = {**proof(1, new[2]), "points": proof(2, new[2])["points"]}  # valid points of another proof
    refusals.append(("forged points", new[2], forged, 403, "admission_invalid_proof"))
    for name, commitment, body, status, code in refusals:
        r = _register(http, group_g, commitment, admission_proof=body)
        assert r.status_code == status and r.json()["error"]["code"] == code, (name, r.text)
        assert outbox.get(group_g, commitment) is None, name  # nothing queued
    _error(_register(http, group_g, new[2]), 403, "admission_required")
    _error(_register(http, group_g, new[2], invite="zki_" + "0" * 32), 403, "admission_required")
    two = {"commitments": [str(new[2]), str(new[3])], "admission_proof": proof(1, new[2])}
    _error(http.post(f"/v1/groups/{group_g}/members", json=two), 400, "malformed")
    assert outbox.get(group_g, new[2]) is None and outbox.get(group_g, new[3]) is None

    # A refused enqueue (C already pending) does not burn the credential.
    _error(_register(http, group_g, new[0], admission_proof=proof(1, new[0])), 409, "duplicate")
    assert _register(http, group_g, new[4], admission_proof=proof(1, new[4])).status_code == 202
    assert registry.service.admission.nullifier_count() == 2

    # Key rotation: a new round (set by the operator) admits each person once more.
    r = http.put(f"/v1/groups/{group_g}/admission", json={"policy": "zk", "admission_group": group_a, "round": 1}, headers=AUTH)
    assert r.status_code == 200 and r.json()["admission"]["round"] == 1, r.text
    _error(_register(http, group_g, new[5], admission_proof=proof(0, new[5])), 403, "admission_wrong_round")
    assert _register(http, group_g, new[5], admission_proof=proof(0, new[5], round_=1)).status_code == 202
    _error(_register(http, group_g, new[6], admission_proof=proof(0, new[6], round_=1)), 409, "admission_used")

    # The client SDK: the admission identity and its Merkle proof in, one registration out.
    with RegistryClient(registry.url) as client:
        assert client.register_admitted(group_g, new[7], persons[2], admission_group=group_a)["status"] == "pending"
        with pytest.raises(RegistryClientError) as refused:
            client.register_admitted(group_g, new[6], persons[2])
        assert refused.value.code == "admission_used"
        with pytest.raises(RegistryClientError):
            client.register_admitted(group_g, new[6], persons[1], admission_group=group_a + 1)

    # Unlinkable: the admission store holds nullifiers, never an admission commitment.
    registry.service.admission.close()  # checkpoint, so the main file holds everything
    raw = b"".join(p.read_bytes() for p in registry.settings.data_dir.glob("admission.sqlite*"))
    for p in persons:
        assert str(p.commitment).encode() not in raw
    for c in new:
        assert str(c).encode() not in raw


@needs_node
def test_js_sdk_admission_proof_is_accepted(
    registry: Registry, http: httpx.Client, zk_groups: tuple[int, int, list[Identity]]
) -> None:
    group_a, _group_g, persons = zk_groups
    group = _create(http, policy="zk", admission_group=group_a)
    commitment = Identity("admission-js-new").commitment
    scope = AdmissionScope.of(registry.deployment, group, 0).encode()
    made = run_js(
        "proof_generate.mjs",
        {
            "privateKey": "admission-person-1",
            "members": [str(p.commitment) for p in persons],  # the admission group's leaves, in order
            "message": {"bigint": str(commitment)},
            "scope": {"bigint": str(scope)},
        },
    )
    r = _register(http, group, commitment, admission_proof=made["proof"])
    assert r.status_code == 202, r.text
    _error(_register(http, group, Identity("admission-js-other").commitment, admission_proof=made["proof"]), 403, "admission_message_mismatch")


def test_invite(registry: Registry, http: httpx.Client, tmp_path: Path) -> None:
    group = _create(http, policy="invite")
    other = _create(http, policy="invite")
    expires = int(registry.clock()) + 3600
    r = http.post(f"/v1/groups/{group}/invites", json={"count": 3, "expires_at": expires}, headers=AUTH)
    assert r.status_code == 201, r.text
    codes = r.json()["invites"]
    assert len(set(codes)) == 3
    foreign = http.post(f"/v1/groups/{other}/invites", json={"count": 1, "expires_at": expires}, headers=AUTH).json()["invites"][0]
    _error(http.post(f"/v1/groups/{group}/invites", json={"count": 1, "expires_at": expires}), 401, "unauthorized")
    outbox = registry.service.outbox
    new = [Identity(f"invite-new-{i}").commitment for i in range(6)]

    assert _register(http, group, new[0], invite=codes[0]).status_code == 202
    _error(_register(http, group, new[1], invite=codes[0]), 409, "invite_used")  # reuse
    _error(_register(http, group, new[1], invite=foreign), 403, "invite_invalid")  # another group's
    _error(_register(http, group, new[1], invite="zki_not-a-code"), 403, "invite_invalid")
    _error(_register(http, group, new[1]), 403, "admission_required")
    assert outbox.get(group, new[1]) is None
    # A refused enqueue (already pending) leaves the code usable.
    _error(_register(http, group, new[0], invite=codes[1]), 409, "duplicate")
    assert _register(http, group, new[2], invite=codes[1]).status_code == 202

    # Expiry: a code minted to expire in 60 s is refused once the registry's clock passed it.
    short = http.post(
        f"/v1/groups/{group}/invites", json={"count": 1, "expires_at": int(registry.clock()) + 60}, headers=AUTH
    ).json()["invites"][0]
    registry.clock.offset += 120
    try:
        _error(_register(http, group, new[3], invite=short), 403, "invite_expired")
        assert outbox.get(group, new[3]) is None
        _error(
            http.post(f"/v1/groups/{group}/invites", json={"count": 1, "expires_at": int(time.time()) + 60}, headers=AUTH),
            400,
            "malformed",
        )  # already expired by the registry's clock
    finally:
        registry.clock.offset -= 120
    # Invites only for invite groups; the client SDK sends the code.
    _error(http.post("/v1/groups/0/invites", json={"count": 1, "expires_at": expires}, headers=AUTH), 400, "malformed")
    with RegistryClient(registry.url) as client:
        assert client.register(group, new[4], invite=codes[2])["status"] == "pending"

    # Only hashes are stored.
    registry.service.admission.close()
    raw = b"".join(p.read_bytes() for p in registry.settings.data_dir.glob("admission.sqlite*"))
    for code in [*codes, foreign, short]:
        assert code.encode() not in raw and code[4:].encode() not in raw
        assert hashlib.sha256(code.encode()).hexdigest().encode() in raw


def test_policy_changes_and_refusals(registry: Registry, http: httpx.Client) -> None:
    group = _create(http)  # no admission group configured: created without a policy
    assert http.get(f"/v1/groups/{group}").json()["admission"] is None
    c = Identity("policy-change").commitment
    _error(_register(http, group, c), 403, "group_not_served")
    r = http.put(f"/v1/groups/{group}/admission", json={"policy": "open"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["admission"] == {"policy": "open", "admission_group": None, "round": 0, "send": True}
    assert _register(http, group, c).status_code == 202
    _error(http.put(f"/v1/groups/{group}/admission", json={"policy": "zk"}, headers=AUTH), 400, "malformed")
    _error(http.put(f"/v1/groups/{group}/admission", json={"policy": "zk", "admission_group": group}, headers=AUTH), 400, "malformed")
    _error(http.put(f"/v1/groups/{group}/admission", json={"policy": "zk", "admission_group": 999}, headers=AUTH), 404, "unknown_group")
    _error(http.put(f"/v1/groups/{group}/admission", json={"policy": "nobody"}, headers=AUTH), 422, "malformed")
    _error(http.put(f"/v1/groups/{group}/admission", json={"policy": "open"}), 401, "unauthorized")
    _error(http.post("/v1/groups", json={"admission": {"policy": "zk", "admission_group": 999}}, headers=AUTH), 404, "unknown_group")
    assert http.get(f"/v1/groups/{group}").json()["admission"]["policy"] == "open"


def test_only_the_operators_groups_authorize_sends(
    registry: Registry, http: httpx.Client, zk_groups: tuple[int, int, list[Identity]], tmp_path: Path
) -> None:
    """A group created on the contract by another account and filled without any admission:
    every send is refused on both authorization paths."""
    group_a, _group_g, persons = zk_groups
    stranger = Transactor(registry.anvil.w3, anvil_dev_account(5), poll_interval=0.01)
    contract = RegistryContract(registry.anvil.w3, registry.manifest.address("ZkIdRegistry"), stranger)
    foreign = contract.create_group(root_window=3600)
    sybils = [Identity(f"sybil-{i}") for i in range(3)]
    contract.add_members(foreign, [s.commitment for s in sybils])
    tree = LeanIMT(leaves=[s.commitment for s in sybils])
    registry.wait_until(lambda: registry.service.index.group(foreign) is not None, what="the foreign group indexed")
    registry.wait_root(foreign, tree.root)

    # The operator's own groups: one without a policy (not listed), the admission group
    # (listed, not a send group); a member of each.
    unlisted = _create(http)
    insider = Identity("send-groups-insider")
    assert http.post(f"/v1/groups/{unlisted}/members", json={"commitments": [str(insider.commitment)]}, headers=AUTH).status_code == 202
    registry.wait_included(unlisted, [insider.commitment])

    epoch = epoch_at(registry.clock(), registry.settings.epoch_length)
    blob = b"a send the operator never admitted"
    digest = hashlib.sha256(blob).digest()

    def send_proof(who: Identity, merkle: Any, group: int, slot: int) -> dict[str, Any]:
        scope = RelayScope.of(registry.deployment, group, epoch, slot).encode()
        return generate_proof(who, merkle, blob_message(digest), scope).to_dict()

    foreign_proofs = [send_proof(s, tree.generate_proof(i), foreign, i) for i, s in enumerate(sybils)]
    unlisted_proof = send_proof(insider, _merkle(http, unlisted, insider.commitment), unlisted, 0)
    admission_proof = send_proof(persons[0], _merkle(http, group_a, persons[0].commitment), group_a, 0)

    # Registry path.
    for proof in foreign_proofs:
        body = {"group_id": foreign, "proof": proof, "blob_digest": digest.hex()}
        _error(http.post("/v1/authorize", json=body), 403, "group_not_served")
    for group, proof in ((unlisted, unlisted_proof), (group_a, admission_proof)):
        _error(http.post("/v1/authorize", json={"group_id": group, "proof": proof, "blob_digest": digest.hex()}), 403, "group_not_served")
    # Nor can the stranger's group be registered into or listed by this registry.
    _error(_register(http, foreign, Identity("sybil-new").commitment), 403, "forbidden")
    _error(http.put(f"/v1/groups/{foreign}/admission", json={"policy": "open"}, headers=AUTH), 403, "forbidden")

    # Local path (a relay checking against the ledger): the operator is the deployer.
    local = LocalAuthorizer(
        registry.contract, tmp_path / "nullifiers.sqlite", clock=registry.clock, operator=registry.manifest.deployer
    )
    for proof in foreign_proofs:
        assert local.authorize(proof, foreign, digest).reason.value == "group_not_served"
    listed = LocalAuthorizer(
        registry.contract, tmp_path / "listed.sqlite", clock=registry.clock,
        operator=registry.manifest.deployer, send_groups=[0],
    )
    assert listed.authorize(unlisted_proof, unlisted, digest).reason.value == "group_not_served"

    # A real local-mode relay, as `zkid relay` runs it.
    with running_relay(
        tmp_path / "relay", registry.settings.rpc_url or "", registry.manifest, send_groups=(0,)
    ) as (url, relay, _app), httpx.Client(base_url=url, timeout=60) as client:
        for i, (group, proof) in enumerate([*((foreign, p) for p in foreign_proofs), (unlisted, unlisted_proof)]):
            body = {
                "mailbox": f"{i:02x}" * 32,
                "pickup_hash": hashlib.sha256(b"capability").hexdigest(),
                "blob": base64.b64encode(blob).decode(),
                "group_id": group,
                "proof": proof,
            }
            _error(client.post("/v1/blobs", json=body), 403, "group_not_served")
        assert relay.store.count() == 0


def _requests_by_route(http: httpx.Client) -> dict[str, float]:
    """zkid_http_requests_total summed per route template (GET only), from /metrics."""
    counts: dict[str, float] = {}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("zkid_http_requests_total{") and 'method="GET"' in line:
            route = line.split('route="', 1)[1].split('"', 1)[0]
            counts[route] = counts.get(route, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_an_admitted_registration_never_sends_the_admission_commitment(
    registry: Registry, http: httpx.Client, zk_groups: tuple[int, int, list[Identity]], tmp_path: Path
) -> None:
    """The registry knows which person owns each admission commitment (its account service
    wrote them): a client that asked it for that commitment's Merkle proof, then registered
    C from the same address, would link the person to C. The SDK and the CLI build the
    admission group's tree from its whole member list and prove locally."""
    group_a, _group_g, persons = zk_groups
    group = _create(http, policy="zk", admission_group=group_a)
    proofs_route, list_route = "/v1/groups/{group_id}/proofs/{commitment}", "/v1/groups/{group_id}/members"
    before = _requests_by_route(http)

    sdk_new = Identity("unlinkable-sdk").commitment
    with RegistryClient(registry.url) as client:
        assert client.register_admitted(group, sdk_new, persons[1], admission_group=group_a)["status"] == "pending"
        # The member list is the admission group's tree, removed members included.
        assert client.members(group_a, page=2).root == LeanIMT(leaves=[p.commitment for p in persons]).root
    _person, admission_file = _identity_file(tmp_path, "admission-person-2")  # persons[2]'s secret
    cli_new = Identity("unlinkable-cli").commitment
    out = _zkid("register", "--url", registry.url, "--group", str(group), str(cli_new),
                "--admission-identity", str(admission_file), "--admission-group", str(group_a), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "pending", out.stderr

    after = _requests_by_route(http)
    assert after.get(proofs_route, 0.0) == before.get(proofs_route, 0.0)  # no member's proof was asked for
    assert after.get(list_route, 0.0) >= before.get(list_route, 0.0) + 3  # the whole list instead
    assert registry.service.outbox.get(group, sdk_new) is not None and registry.service.outbox.get(group, cli_new) is not None


def test_an_admission_group_must_stay_closed(registry: Registry, http: httpx.Client, zk_groups: tuple[int, int, list[Identity]]) -> None:
    """A zk group admitting from an open group would admit anyone (Sybil resistance gone):
    refused when the zk group is created or set, and when its admission group would change."""
    group_a, group_g, _persons = zk_groups
    opened = _create(http, policy="open")
    sending = _create(http, policy="closed", send=True)
    unset = _create(http)
    for a in (opened, sending, unset):
        _error(http.post("/v1/groups", json={"admission": {"policy": "zk", "admission_group": a}}, headers=AUTH), 409, "admission_group_not_closed")
        _error(http.put(f"/v1/groups/{group_g}/admission", json={"policy": "zk", "admission_group": a}, headers=AUTH), 409, "admission_group_not_closed")
    assert http.get(f"/v1/groups/{group_g}").json()["admission"]["admission_group"] == group_a
    # A, used by G, cannot be opened nor made a send group; it may stay closed (e.g. a round change elsewhere).
    for change in ({"policy": "open"}, {"policy": "invite"}, {"policy": "closed", "send": True}):
        _error(http.put(f"/v1/groups/{group_a}/admission", json=change, headers=AUTH), 409, "admission_group_in_use")
    assert http.get(f"/v1/groups/{group_a}").json()["admission"] == {"policy": "closed", "admission_group": None, "round": 0, "send": False}
    assert http.put(f"/v1/groups/{group_a}/admission", json={"policy": "closed"}, headers=AUTH).status_code == 200


def test_a_relay_without_send_groups_refuses_what_the_registry_refuses(
    registry: Registry, http: httpx.Client, zk_groups: tuple[int, int, list[Identity]], tmp_path: Path
) -> None:
    """`zkid relay --rpc-url ... --manifest ...` with no --send-group: on the ledger an
    admission group is just another group of the operator, so a relay serving "every group
    the operator administers" authorized sends the registry refuses (group_not_served). It
    now fails closed, says so at start, and serves exactly the listed groups."""
    from tests.registry.relay.test_relay_cli import _relay_process

    group_a, _group_g, persons = zk_groups
    sender = Identity("relay-send-group-member")
    r = http.post("/v1/groups/0/members", json={"commitments": [str(sender.commitment)]}, headers=AUTH)
    assert r.status_code in (202, 409), r.text
    registry.wait_included(0, [sender.commitment])
    blob = b"a send through a relay with and without send groups"
    digest = hashlib.sha256(blob).digest()
    epoch = epoch_at(registry.clock(), registry.settings.epoch_length)

    def body(who: Identity, group: int, slot: int, mailbox: int) -> dict[str, Any]:
        scope = RelayScope.of(registry.deployment, group, epoch, slot).encode()
        proof = generate_proof(who, _merkle(http, group, who.commitment), blob_message(digest), scope)
        return {
            "mailbox": f"{mailbox:02x}" * 32,
            "pickup_hash": hashlib.sha256(b"capability").hexdigest(),
            "blob": base64.b64encode(blob).decode(),
            "group_id": group,
            "proof": proof.to_dict(),
        }

    # The registry refuses a send as a member of the admission group.
    person_send = body(persons[0], group_a, 7, 1)
    registry_body = {"group_id": group_a, "proof": person_send["proof"], "blob_digest": digest.hex()}
    _error(http.post("/v1/authorize", json=registry_body), 403, "group_not_served")

    rpc = registry.settings.rpc_url or ""
    manifest_args = ("--manifest", str(registry.settings.manifest_path))
    with _relay_process(tmp_path / "relay-default", rpc, registry.manifest, *manifest_args) as (proc, url):
        with httpx.Client(base_url=url, timeout=60) as client:
            _error(client.post("/v1/blobs", json=person_send), 403, "group_not_served")
            _error(client.post("/v1/blobs", json=body(sender, 0, 8, 2)), 403, "group_not_served")
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert "no --send-group given" in err and "refuses every send" in err

    with _relay_process(tmp_path / "relay-listed", rpc, registry.manifest, *manifest_args, "--send-group", "0") as (proc, url):
        with httpx.Client(base_url=url, timeout=60) as client:
            _error(client.post("/v1/blobs", json=body(persons[1], group_a, 9, 3)), 403, "group_not_served")
            sent = client.post("/v1/blobs", json=body(sender, 0, 10, 4))
            assert sent.status_code == 201, sent.text
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert "no --send-group" not in err


# ------------------------------------------------------------------ the command line

PASSPHRASE = "admission cli passphrase"


def _zkid(*args: str, token: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZKID_PASSPHRASE": PASSPHRASE}
    env.pop("ZKID_ADMISSION_PASSPHRASE", None)
    env.pop("ZKID_URL", None)
    env.pop("ZKID_OPERATOR_TOKEN", None)
    if token:
        env["ZKID_OPERATOR_TOKEN"] = OPERATOR_TOKEN
    return run_zkid(*args, env=env)


def _identity_file(tmp_path: Path, name: str) -> tuple[Identity, Path]:
    who = Identity(name)
    path = tmp_path / f"{name}.id"
    path.write_bytes(encrypt_identity(who, PASSPHRASE, scrypt_n=2**14))
    return who, path


def test_cli_admission_flow(registry: Registry, http: httpx.Client, tmp_path: Path) -> None:
    url = registry.url
    out = _zkid("group", "create", "--url", url, "--policy", "closed", "--json", token=True)
    assert out.returncode == 0, out.stderr
    group_a = json.loads(out.stdout)["group_id"]
    out = _zkid("group", "create", "--url", url, "--policy", "zk", "--admission-group", str(group_a), token=True)
    assert out.returncode == 0 and "policy zk (admission group" in out.stdout, out.stderr
    group_g = int(out.stdout.split()[1])

    # The account service (operator token) adds the checked person's admission commitment.
    checked, admission_file = _identity_file(tmp_path, "cli-checked-person")
    out = _zkid("register", "--url", url, "--group", str(group_a), str(checked.commitment), "--wait", "--timeout", "60")
    assert out.returncode == 1 and "admission_required" in out.stderr  # not without the token
    out = _zkid("register", "--url", url, "--group", str(group_a), "--identity", str(admission_file), "--as-operator", "--wait", "--timeout", "60", token=True)
    assert out.returncode == 0, out.stderr
    registry.wait_included(group_a, [checked.commitment])

    # The person registers a fresh ZK-ID, proving only "I was checked".
    fresh, fresh_file = _identity_file(tmp_path, "cli-fresh-zkid")
    args = ["register", "--url", url, "--group", str(group_g), "--identity", str(fresh_file)]
    out = _zkid(*args, "--admission-identity", str(admission_file), "--admission-group", str(group_a), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "pending"
    again, again_file = _identity_file(tmp_path, "cli-second-zkid")
    out = _zkid("register", "--url", url, "--group", str(group_g), "--identity", str(again_file),
                "--admission-identity", str(admission_file), "--admission-group", str(group_a))
    assert out.returncode == 1 and "admission_used" in out.stderr, out.stderr
    out = _zkid("register", "--url", url, "--group", str(group_g), "--identity", str(again_file),
                "--admission-identity", str(admission_file), "--admission-group", str(group_g))
    assert out.returncode == 2 and "admission group is" in out.stderr
    out = _zkid("register", "--url", url, "--group", str(group_g), str(again.commitment), "--admission-group", "1")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("zkid: error:")

    # A new round (operator) re-admits the person once.
    out = _zkid("admission", "set", "--url", url, "--group", str(group_g), "--policy", "zk",
                "--admission-group", str(group_a), "--round", "1", token=True)
    assert out.returncode == 0 and "round 1" in out.stdout, out.stderr
    out = _zkid("register", "--url", url, "--group", str(group_g), "--identity", str(again_file),
                "--admission-identity", str(admission_file), "--admission-group", str(group_a))
    assert out.returncode == 0, out.stderr

    # Invites.
    out = _zkid("group", "create", "--url", url, "--policy", "invite", "--json", token=True)
    group_i = json.loads(out.stdout)["group_id"]
    out = _zkid("admission", "invite", "create", "--url", url, "--group", str(group_i), "--count", "2", "--expires", "1h", token=True)
    assert out.returncode == 0, out.stderr
    codes = out.stdout.split()
    assert len(codes) == 2
    member = Identity("cli-invited").commitment
    assert _zkid("register", "--url", url, "--group", str(group_i), str(member), "--invite", codes[0]).returncode == 0
    out = _zkid("register", "--url", url, "--group", str(group_i), str(member + 1), "--invite", codes[0])
    assert out.returncode == 1 and "invite_used" in out.stderr
    for bad in ("yesterday", "0s"):
        out = _zkid("admission", "invite", "create", "--url", url, "--group", str(group_i), "--expires", bad, token=True)
        assert out.returncode == 2 and out.stderr.strip().startswith("zkid: error:"), out.stderr
    out = _zkid("admission", "invite", "create", "--url", url, "--group", str(group_i), "--expires", "2000-01-01T00:00:00Z", token=True)
    assert out.returncode == 2 and "past" in out.stderr
    out = _zkid("admission", "invite", "create", "--url", url, "--group", str(group_i))
    assert out.returncode == 2 and "ZKID_OPERATOR_TOKEN" in out.stderr


def test_admission_store_is_checked_at_start(registry_settings: Any) -> None:
    """admission.sqlite is a durable store: once created, a lost or emptied one stops the
    registry from starting (spent admission credentials would register again)."""
    from registry.service.facade import RegistryService
    from registry.storage.sqlite import StoreError

    service = RegistryService.open(registry_settings)
    service.sync()
    assert service.open_default_group().policy == "open"
    service.close()
    store = registry_settings.data_dir / "admission.sqlite"
    assert "admission.sqlite" in json.loads((registry_settings.data_dir / "stores.json").read_text())["stores"]
    good = store.read_bytes()
    for damage in (store.unlink, lambda: store.write_bytes(b"")):
        damage()
        with pytest.raises(StoreError) as refused:
            RegistryService.open(registry_settings)
        assert "admission.sqlite" in str(refused.value) and "restore it from a backup" in str(refused.value)
        store.write_bytes(good)
    reopened = RegistryService.open(registry_settings)
    try:
        assert reopened.admission_info(0) is not None and reopened.admission_info(0).policy == "open"  # type: ignore[union-attr]
    finally:
        reopened.close()


def test_zkid_up_opens_group_0_and_says_so(tmp_path: Path) -> None:
    """`open` is the default only for `zkid up`'s local group 0, printed on start; a
    policy the operator set instead survives a restart."""
    import signal

    from registry.ledger.anvil import LocalLedger, free_port
    from tests.registry.test_e2e_faults import TOKEN, start_up

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ledger_port = free_port()
    try:
        up = start_up(data_dir, free_port(), ledger_port)
        try:
            assert "admission: group 0 is open" in up.log.read_text()
            with httpx.Client(base_url=up.url, timeout=60) as client:
                assert client.get("/v1/groups/0").json()["admission"]["policy"] == "open"
                assert _register(client, 0, Identity("up-open").commitment).status_code == 202
                r = client.put("/v1/groups/0/admission", json={"policy": "invite"}, headers={"Authorization": f"Bearer {TOKEN}"})
                assert r.status_code == 200, r.text
        finally:
            assert up.stop(signal.SIGINT) == 0
        up = start_up(data_dir, free_port(), ledger_port)
        try:
            text = up.log.read_text()
            assert "admission: group 0: policy invite" in text and "is open" not in text
            with httpx.Client(base_url=up.url, timeout=60) as client:
                _error(_register(client, 0, Identity("up-closed").commitment), 403, "admission_required")
        finally:
            assert up.stop(signal.SIGINT) == 0
    finally:
        LocalLedger(data_dir).down()


def test_admission_record_bounds_are_the_apis() -> None:
    """An admission group is a group id (at most 2^53 - 1, docs/api.md), a round a uint64:
    the limits are accepted, one more is ``malformed``."""
    from registry._utils.integers import MAX_GROUP_ID, UINT64_MAX
    from registry.errors import RegistryError
    from registry.service.admission import GroupAdmission

    assert GroupAdmission(1, "zk", admission_group=MAX_GROUP_ID, round=UINT64_MAX).admission_group == 2**53 - 1
    for change in ({"admission_group": MAX_GROUP_ID + 1}, {"round": UINT64_MAX + 1}, {"round": -1}):
        with pytest.raises(RegistryError) as err:
            GroupAdmission(1, "zk", **{"admission_group": 0, **change})  # type: ignore[arg-type]
        assert err.value.code == "malformed" and err.value.status == 400
