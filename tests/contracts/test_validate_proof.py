"""validateProof on a real Anvil with the official SemaphoreVerifier (ceremony keys).

Proofs come from the official JS SDK (@semaphore-protocol/proof, tests/js/ledger_proofs.mjs)
and from the Python ``zk.proof`` package.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from registry.ledger import errors as E
from registry.ledger.deploy import Deployment
from registry.ledger.registry_contract import parse_proof, proof_tuple
from tests.jsbridge import run_js
from zk.field import Q, R

MEMBER_KEYS = ["ledger-proof-0", "ledger-proof-1", "ledger-proof-2"]
WINDOW = 100


@pytest.fixture(scope="module")
def js() -> dict[str, Any]:
    out: dict[str, Any] = run_js(
        "ledger_proofs.mjs",
        {
            "memberKeys": MEMBER_KEYS,
            "proofs": [
                {"signer": 0, "message": "1", "scope": "100"},
                {"signer": 1, "message": "2", "scope": "100"},
                {"signer": 2, "message": "hello", "scope": "101", "depth": 20},
            ],
        },
    )
    return out


@pytest.fixture
def group(deployed: Deployment, chain: Any, js: dict[str, Any]) -> int:
    reg = deployed.registry
    group_id = reg.create_group(root_window=WINDOW)
    reg.add_members(group_id, [int(c) for c in js["commitments"]])
    assert reg.root(group_id) == int(js["root"])
    return group_id


def test_js_proof_is_accepted_once(deployed: Deployment, group: int, js: dict[str, Any]) -> None:
    reg = deployed.registry
    proof = js["proofs"][0]
    assert reg.verify_proof(group, proof)
    receipt = reg.validate_proof(group, proof)
    (event,) = reg.decode_receipt(receipt)
    assert event.name == "ProofValidated"
    assert event.args == {
        "groupId": group,
        "scope": 100,
        "nullifier": int(proof["nullifier"]),
        "message": 1,
        "root": int(js["root"]),
    }
    assert reg.is_nullifier_used(group, int(proof["nullifier"]))
    with pytest.raises(E.NullifierAlreadyUsed) as info:
        reg.validate_proof(group, proof)
    assert info.value.args_dict == {"groupId": group, "nullifier": int(proof["nullifier"])}
    # Nullifiers are spent per group: the same members in another group accept it.
    other = reg.create_group()
    reg.add_members(other, [int(c) for c in js["commitments"]])
    reg.validate_proof(other, proof)
    # Another member, same scope: another nullifier.
    reg.validate_proof(group, js["proofs"][1])


def test_depth_20_proof_of_a_small_group(deployed: Deployment, group: int, js: dict[str, Any]) -> None:
    proof = js["proofs"][2]
    assert proof["merkleTreeDepth"] == 20
    deployed.registry.validate_proof(group, proof)


def test_tampered_proofs_are_rejected(deployed: Deployment, group: int, js: dict[str, Any]) -> None:
    reg = deployed.registry
    good = js["proofs"][0]
    tampered = []
    for key, change in (
        ("points", lambda p: [str((int(p[0]) + 1) % Q)] + p[1:]),
        ("points", lambda p: p[:6] + [p[7], p[6]]),
        ("message", lambda m: "2"),
        ("scope", lambda s: "999"),
        ("nullifier", lambda n: str((int(n) + 1) % R)),
    ):
        bad = copy.deepcopy(good)
        bad[key] = change(bad[key])
        tampered.append(bad)
    for bad in tampered:
        assert reg.verify_proof(group, bad) is False
        with pytest.raises(E.InvalidProof):
            reg.validate_proof(group, bad)
    assert not reg.is_nullifier_used(group, int(good["nullifier"]))
    reg.validate_proof(group, good)


def test_superseded_root_valid_then_expired(deployed: Deployment, group: int, js: dict[str, Any], chain: Any) -> None:
    reg = deployed.registry
    receipt = reg.add_member(group, 123456789)  # supersedes the proofs' root
    superseded_at = reg.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    reg.validate_proof(group, js["proofs"][1])  # still inside the window
    chain.set_next_timestamp(superseded_at + WINDOW + 1)
    chain.mine()
    with pytest.raises(E.MerkleRootExpired) as info:
        reg.validate_proof(group, js["proofs"][0])
    assert info.value.args_dict == {"groupId": group, "root": int(js["root"]), "expiredAt": superseded_at + WINDOW}
    with pytest.raises(E.MerkleRootExpired):
        reg.verify_proof(group, js["proofs"][0])
    assert isinstance(info.value, E.RootRejected)


def test_unknown_root_and_group(deployed: Deployment, chain: Any, js: dict[str, Any]) -> None:
    reg = deployed.registry
    partial = reg.create_group()
    reg.add_members(partial, [int(c) for c in js["commitments"][:2]])
    with pytest.raises(E.MerkleRootUnknown):
        reg.validate_proof(partial, js["proofs"][0])
    with pytest.raises(E.GroupDoesNotExist):
        reg.validate_proof(999, js["proofs"][0])


def test_contract_checks_the_depth(deployed: Deployment, group: int, js: dict[str, Any]) -> None:
    reg = deployed.registry
    good = parse_proof(js["proofs"][0])
    for depth in (0, 33):
        raw = (depth,) + proof_tuple(good)[1:]
        with pytest.raises(E.MerkleTreeDepthNotSupported):
            reg.tx.transact(reg.contract.functions.validateProof(group, raw))  # type: ignore[union-attr]


def test_python_proof_is_accepted(deployed: Deployment, group: int, js: dict[str, Any]) -> None:
    from zk.identity import Identity
    from zk.proof import generate_proof
    from zk.tree import LeanIMT

    identities = [Identity(k) for k in MEMBER_KEYS]
    assert [str(i.commitment) for i in identities] == js["commitments"]
    proof = generate_proof(identities[2], LeanIMT(leaves=[i.commitment for i in identities]), 7, 100)
    reg = deployed.registry
    reg.validate_proof(group, proof)  # the SemaphoreProof object itself
    with pytest.raises(E.NullifierAlreadyUsed):
        reg.validate_proof(group, proof.to_dict())


def test_parse_proof_is_strict(js: dict[str, Any]) -> None:
    good = js["proofs"][0]
    assert parse_proof(json.dumps(good)) == parse_proof(good)
    for key, value in (
        ("merkleTreeRoot", str(R)),
        ("merkleTreeRoot", "0" + good["merkleTreeRoot"]),
        ("nullifier", " " + good["nullifier"]),
        ("message", str(2**256)),
        ("merkleTreeDepth", 0),
        ("merkleTreeDepth", 33),
        ("points", good["points"][:7]),
        ("points", [str(Q)] + good["points"][1:]),
    ):
        bad = dict(good)
        bad[key] = value
        with pytest.raises(ValueError):
            parse_proof(bad)
    with pytest.raises(ValueError):
        parse_proof({k: v for k, v in good.items() if k != "scope"})
    with pytest.raises(ValueError):
        parse_proof("not json")
