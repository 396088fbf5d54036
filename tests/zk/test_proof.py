"""zk.proof: Semaphore v4 proofs, cross-checked both ways with the real JS SDK and snarkjs."""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from tests.jsbridge import run_js
from tests.support.node import needs_node
from tests.zk.groth16.helpers import VECTORS, vector
from zk.field import Q, R
from zk.groth16 import Proof
from zk.hashing import MessageError, semaphore_hash
from zk.identity import Identity
from zk.poseidon import poseidon2
from zk.proof import ProofError, SemaphoreProof, generate_proof, public_signals, verify_proof
from zk.tree import LeanIMT, MerkleProof
from zk.witness import WitnessError

L = 2736030358979909402780800718157159386076813972158567259200215660948447373041
TWO_256 = 1 << 256
IDS = [v["name"] for v in VECTORS]


def py_value(spec: Any) -> int | str:
    """A vector's message/scope as the Python caller would pass it."""
    return int(spec["bigint"]) if isinstance(spec, dict) else spec


def js_value(value: int | str) -> Any:
    return {"bigint": str(value)} if isinstance(value, int) else value


def python_proof_for(vec: dict[str, Any]) -> SemaphoreProof:
    identity = Identity(vec["privateKey"])
    group = LeanIMT(leaves=[Identity(k).commitment for k in vec["memberKeys"]])
    target: LeanIMT | MerkleProof = group
    if vec.get("useMerkleProof"):
        index = group.index_of(identity.commitment)
        assert index is not None
        target = group.generate_proof(index)
    return generate_proof(identity, target, py_value(vec["message"]), py_value(vec["scope"]), vec.get("depth"))


@pytest.fixture(scope="module")
def py_proofs() -> dict[int, SemaphoreProof]:
    """Python-made proofs for the JS vectors at depths 1, 2, 20 and 32."""
    return {depth: python_proof_for(vector(depth)) for depth in (1, 2, 20, 32)}


# --- JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_json_shape_is_the_js_sdk_one(vec: dict[str, Any]) -> None:
    proof = SemaphoreProof.from_dict(vec["proof"])
    assert proof.to_dict() == vec["proof"]
    assert list(proof.to_dict()) == list(vec["proof"])  # key order, as JSON.stringify
    assert proof.to_json() == json.dumps(vec["proof"], separators=(",", ":"))
    assert SemaphoreProof.from_json(proof.to_json()) == proof
    assert SemaphoreProof.from_json(proof.to_json().encode()) == proof
    assert isinstance(proof.to_dict()["merkleTreeDepth"], int)


def mutated(change: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    data = {**vector(2)["proof"], **change}
    if drop:
        del data[drop]
    return data


@pytest.mark.parametrize(
    "data",
    [
        mutated({"merkleTreeDepth": "2"}),
        mutated({"merkleTreeDepth": True}),
        mutated({"merkleTreeDepth": 2.0}),
        mutated({"merkleTreeDepth": 0}),
        mutated({"merkleTreeDepth": 33}),
        mutated({"merkleTreeRoot": str(R)}),
        mutated({"merkleTreeRoot": "0" + vector(2)["proof"]["merkleTreeRoot"]}),
        mutated({"nullifier": " 1"}),
        mutated({"nullifier": 5}),
        mutated({"message": str(TWO_256)}),
        mutated({"message": "-1"}),
        mutated({"scope": "0x01"}),
        mutated({"points": vector(2)["proof"]["points"][:7]}),
        mutated({"points": vector(2)["proof"]["points"][:7] + [str(Q)]}),
        mutated({"points": "[]"}),
        mutated({"extra": 1}),
        mutated({}, drop="scope"),
        [],
    ],
)
def test_from_dict_is_strict(data: Any) -> None:
    with pytest.raises(ProofError):
        SemaphoreProof.from_dict(data)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"merkleTreeDepth": NaN}',
        json.dumps(vector(2)["proof"])[:-1] + ',"scope":"1"}',  # duplicate key
        b"\xff",
    ],
)
def test_from_json_is_strict(text: str | bytes) -> None:
    with pytest.raises(ProofError):
        SemaphoreProof.from_json(text)


def test_constructor_checks_types() -> None:
    base = SemaphoreProof.from_dict(vector(2)["proof"])
    assert dataclasses.replace(base, points=list(base.points)).points == base.points  # type: ignore[arg-type]
    for field, value in (("merkle_tree_depth", "2"), ("nullifier", True), ("message", 1.0), ("points", (1, "2"))):
        with pytest.raises(ProofError):
            dataclasses.replace(base, **{field: value})


# --- verification -----------------------------------------------------------------


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_js_vectors_verify(vec: dict[str, Any]) -> None:
    proof = SemaphoreProof.from_dict(vec["proof"])
    assert verify_proof(proof) is True
    assert public_signals(proof) == tuple(int(s) for s in vec["publicSignals"])


def test_js_vector_verifies_with_reference_backend() -> None:
    proof = SemaphoreProof.from_dict(vector(1)["proof"])
    assert verify_proof(proof, backend="reference") is True


def tampered(proof: SemaphoreProof) -> dict[str, SemaphoreProof]:
    points = list(proof.points)
    points[7] = Q - points[7]  # -C: still a valid point
    return {
        "root": dataclasses.replace(proof, merkle_tree_root=(proof.merkle_tree_root + 1) % R),
        "nullifier": dataclasses.replace(proof, nullifier=(proof.nullifier + 1) % R),
        "message": dataclasses.replace(proof, message=proof.message ^ 1),
        "scope": dataclasses.replace(proof, scope=proof.scope ^ 1),
        "points": dataclasses.replace(proof, points=tuple(points)),
    }


def test_tampering_fails() -> None:
    proof = SemaphoreProof.from_dict(vector(2)["proof"])
    for name, bad in tampered(proof).items():
        assert verify_proof(bad) is False, name
    assert verify_proof(dataclasses.replace(proof, merkle_tree_depth=3)) is False


def test_tampered_scope_fails_in_reference() -> None:
    proof = SemaphoreProof.from_dict(vector(1)["proof"])
    assert verify_proof(tampered(proof)["scope"], backend="reference") is False


@pytest.mark.parametrize(
    "change",
    [
        {"merkle_tree_depth": 0},
        {"merkle_tree_depth": 33},
        {"merkle_tree_depth": -2},
        {"merkle_tree_root": R},
        {"nullifier": R + 7},
        {"nullifier": -1},
        {"message": TWO_256},
        {"message": -1},
        {"scope": -5},
        {"points": (1, 2, 3)},
        {"points": tuple([0] * 8)},
        {"points": tuple([Q] * 8)},
        {"points": tuple([1] * 9)},
    ],
)
def test_malformed_typed_proofs_return_false(change: dict[str, Any]) -> None:
    proof = dataclasses.replace(SemaphoreProof.from_dict(vector(2)["proof"]), **change)
    assert verify_proof(proof) is False
    assert verify_proof(proof, backend="reference") is False


def test_verify_needs_a_semaphore_proof() -> None:
    with pytest.raises(TypeError):
        verify_proof(vector(2)["proof"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        verify_proof(SemaphoreProof.from_dict(vector(2)["proof"]), backend="nope")


# --- generation -------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 20, 32])
def test_python_proof_has_the_js_statement(depth: int, py_proofs: dict[int, SemaphoreProof]) -> None:
    vec = vector(depth)
    proof = py_proofs[depth]
    js = SemaphoreProof.from_dict(vec["proof"])
    assert (proof.merkle_tree_depth, proof.merkle_tree_root, proof.nullifier, proof.message, proof.scope) == (
        js.merkle_tree_depth,
        js.merkle_tree_root,
        js.nullifier,
        js.message,
        js.scope,
    )
    assert proof.points != js.points
    assert verify_proof(proof) is True
    secret = Identity(vec["privateKey"]).secret_scalar
    assert proof.nullifier == poseidon2(semaphore_hash(proof.scope), secret)


def test_default_depth_rule() -> None:
    ids = [Identity(f"depth-rule-{i}") for i in range(5)]
    assert generate_proof(ids[0], LeanIMT(leaves=[ids[0].commitment]), 1, 2).merkle_tree_depth == 1
    assert generate_proof(ids[1], LeanIMT(leaves=[i.commitment for i in ids[:2]]), 1, 2).merkle_tree_depth == 1
    group = LeanIMT(leaves=[i.commitment for i in ids])
    assert generate_proof(ids[0], group, 1, 2).merkle_tree_depth == 3
    proof = generate_proof(ids[4], group, b"\x01", "scope", 5)  # lone last leaf: one sibling
    assert proof.merkle_tree_depth == 5 and proof.message == 1 and verify_proof(proof)


@dataclass(frozen=True)
class FakeIdentity:
    secret_scalar: int
    commitment: int


def test_generation_errors() -> None:
    alice, bob, carol = (Identity(n) for n in ("alice", "bob", "carol"))
    group = LeanIMT(leaves=[alice.commitment, bob.commitment])
    with pytest.raises(ProofError, match="not a member"):
        generate_proof(carol, group, 1, 1)
    with pytest.raises(ProofError, match="another leaf"):
        generate_proof(carol, group.generate_proof(0), 1, 1)
    forged = dataclasses.replace(group.generate_proof(0), root=123)
    with pytest.raises(ProofError, match="root"):
        generate_proof(alice, forged, 1, 1)
    for depth in (0, 33, True):
        with pytest.raises(ProofError, match="between 1 and 32"):
            generate_proof(alice, group, 1, 1, depth)  # type: ignore[arg-type]
    big = LeanIMT(leaves=[alice.commitment] + [Identity(f"m{i}").commitment for i in range(4)])
    with pytest.raises(ValueError, match="does not fit"):
        generate_proof(alice, big, 1, 1, 2)
    with pytest.raises(MessageError):
        generate_proof(alice, group, "x" * 32, 1)
    with pytest.raises(MessageError):
        generate_proof(alice, group, -1, 1)
    with pytest.raises(MessageError):
        generate_proof(alice, group, 1, TWO_256)
    with pytest.raises(TypeError):
        generate_proof(alice, [alice.commitment], 1, 1)  # type: ignore[arg-type]


def test_secret_outside_the_subgroup_order_fails_in_the_circuit() -> None:
    fake = FakeIdentity(secret_scalar=L, commitment=Identity("alice").commitment)
    with pytest.raises(WitnessError, match="assert failed"):
        generate_proof(fake, LeanIMT(leaves=[fake.commitment]), 1, 1)


def test_inconsistent_identity_is_caught() -> None:
    alice, bob = Identity("alice"), Identity("bob")
    fake = FakeIdentity(secret_scalar=bob.secret_scalar, commitment=alice.commitment)
    with pytest.raises(ProofError, match="public signals"):
        generate_proof(fake, LeanIMT(leaves=[alice.commitment, Identity("x").commitment]), 1, 1)


# --- live cross-verification with the JS tools --------------------------------------


@needs_node
def test_python_proofs_verify_in_js_and_tampered_ones_do_not(py_proofs: dict[int, SemaphoreProof]) -> None:
    semaphore: list[dict[str, Any]] = []
    snark: list[dict[str, Any]] = []
    expected: list[bool] = []
    for depth, proof in py_proofs.items():
        variants = {"valid": proof} | (tampered(proof) if depth in (1, 20) else {})
        for name, variant in variants.items():
            semaphore.append(variant.to_dict())
            signals = public_signals(variant)
            assert signals is not None
            snark.append(
                {
                    "depth": depth,
                    "proof": Proof.from_points(variant.points, check_subgroup=False).to_snarkjs(),
                    "publicSignals": [str(s) for s in signals],
                }
            )
            expected.append(name == "valid")
    result = run_js("proof_verify.mjs", {"semaphore": semaphore, "snarkjs": snark})
    assert result["semaphore"] == expected
    assert result["snarkjs"] == expected


@needs_node
def test_fresh_js_proof_verifies_in_python() -> None:
    message = secrets.randbelow(TWO_256)
    request = {
        "privateKey": "live-1",
        "memberKeys": ["live-0", "live-1", "live-2"],
        "message": js_value(message),
        "scope": "live scope",
    }
    made = run_js("proof_generate.mjs", request)
    proof = SemaphoreProof.from_dict(made["proof"])
    assert proof.message == message and proof.merkle_tree_depth == 2
    assert verify_proof(proof) is True
    assert verify_proof(proof, backend="reference") is True
    for name, bad in tampered(proof).items():
        assert verify_proof(bad) is False, name
    # Same statement from Python: same nullifier and root.
    mine = generate_proof(Identity("live-1"), LeanIMT(leaves=[int(m) for m in made["members"]]), message, "live scope")
    assert (mine.nullifier, mine.merkle_tree_root) == (proof.nullifier, proof.merkle_tree_root)
