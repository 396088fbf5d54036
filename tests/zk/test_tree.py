"""zk.tree against @zk-kit/lean-imt 2.2.5 / @semaphore-protocol/group 4.14.3."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jsbridge import run_js
from tests.support.node import needs_node
from tests.support.vectors import load_vectors
from zk.field import R, FieldError
from zk.poseidon import poseidon2
from zk.tree import (
    LeanIMT,
    MerkleProof,
    TreeError,
    merkle_proof_to_circuit_inputs,
)

VECTORS = load_vectors("tree.json")
LEAVES = [int(v) for v in VECTORS["leaves"]]



def state(tree: LeanIMT) -> dict[str, Any]:
    return {"root": str(tree.root), "depth": tree.depth, "size": tree.size}


def apply(tree: LeanIMT, op: dict[str, Any]) -> None:
    kind = op["op"]
    if kind == "insert":
        tree.insert(int(op["leaf"]))
    elif kind == "insert_many":
        tree.insert_many([int(v) for v in op["leaves"]])
    elif kind == "update":
        tree.update(op["index"], int(op["leaf"]))
    else:
        assert kind == "remove"
        tree.remove(op["index"])


def naive_root(leaves: list[int]) -> int:
    """The LeanIMT root straight from its definition (independent of zk.tree)."""
    if not leaves:
        return 0
    level = leaves
    while len(level) > 1:
        level = [poseidon2(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


# -- recorded vectors -------------------------------------------------------------------


def test_vector_versions() -> None:
    assert VECTORS["versions"] == {
        "@zk-kit/lean-imt": "2.2.5",
        "@semaphore-protocol/group": "4.14.3",
        "poseidon-lite": "0.3.0",
    }


def test_empty_tree() -> None:
    empty = VECTORS["sequential"]["empty"]
    tree = LeanIMT()
    assert state(tree) == empty["group"] == {"root": "0", "depth": 0, "size": 0}
    assert empty["lean_imt_root"] is None  # the bare JS LeanIMT says undefined; Group says 0
    assert tree.export() == empty["export"] == empty["group_export"] == "[[]]"
    assert state(LeanIMT.import_("[[]]")) == state(tree)
    assert tree.leaves == [] and tree.index_of(1) is None and not tree.has(1)


def test_sequential_inserts() -> None:
    tree = LeanIMT()
    for n, step in enumerate(VECTORS["sequential"]["steps"], start=1):
        tree.insert(LEAVES[n - 1])
        assert state(tree) == {k: step[k] for k in ("root", "depth", "size")}
        for item in step["proofs"]:
            proof = tree.generate_proof(item["i"])
            assert proof.to_dict() == item["proof"]
            assert LeanIMT.verify_proof(proof)


def test_bulk_builds() -> None:
    for item in VECTORS["bulk"]:
        tree = LeanIMT(leaves=LEAVES[: item["size"]])
        assert state(tree) == {k: item[k] for k in ("root", "depth", "size")}
        if "export" in item:
            assert tree.export() == item["export"]
        for p in item.get("proofs", []):
            assert tree.generate_proof(p["i"]).to_dict() == p["proof"]


def test_insert_many_onto_existing_trees() -> None:
    for item in VECTORS["append_grid"]:
        before, batch = item["before"], item["batch"]
        tree = LeanIMT(leaves=LEAVES[:before])
        tree.insert_many(LEAVES[before : before + batch])
        assert (str(tree.root), tree.depth) == (item["root"], item["depth"])


@pytest.mark.parametrize("name", sorted(VECTORS["scenarios"]))
def test_scenarios(name: str) -> None:
    scenario = VECTORS["scenarios"][name]
    tree = LeanIMT()
    for op, expected in zip(scenario["ops"], scenario["states"], strict=True):
        apply(tree, op)
        assert state(tree) == expected, op
    assert [tree.generate_proof(i).to_dict() for i in range(tree.size)] == scenario["proofs"]
    assert tree.export() == scenario["export"]
    again = LeanIMT.import_(scenario["export"])
    assert again.export() == scenario["export"] and again.leaves == tree.leaves


def test_import_js_exports() -> None:
    exports = [item["export"] for item in VECTORS["bulk"] if "export" in item]
    exports += [s["export"] for s in VECTORS["scenarios"].values()]
    for text in exports:
        tree = LeanIMT.import_(text)
        assert tree.export() == text
        assert tree.root == naive_root(tree.leaves)
        unchecked = LeanIMT.import_(text, verify=False)
        assert unchecked.export() == text


def test_duplicates_like_js_group() -> None:
    dup = VECTORS["duplicates"]
    leaves = [int(v) for v in dup["leaves"]]
    with pytest.raises(TreeError, match="already"):
        LeanIMT(leaves=leaves)  # the default follows LeanIMT.sol: no duplicates
    tree = LeanIMT(leaves=leaves, unique=False)
    assert state(tree) == {k: dup[k] for k in ("root", "depth", "size")}
    assert tree.export() == dup["export"]
    assert {str(v): tree.index_of(int(v)) for v in dup["index_of"]} == dup["index_of"]
    tree.update(0, LEAVES[430])
    after = dup["after_update_0"]
    assert state(tree) == {k: after[k] for k in ("root", "depth", "size")}
    assert tree.index_of(leaves[0]) == after["index_of_leaf0"]
    tree.remove(2)
    assert tree.index_of(leaves[0]) == 5
    tree.remove(5)
    assert tree.index_of(leaves[0]) is None and not tree.has(leaves[0])
    with pytest.raises(TreeError, match="more than once"):
        LeanIMT.import_(dup["export"])
    # Batches repeating leaves already present (unique=False) keep every index.
    mixed = LeanIMT(leaves=[5, 6], unique=False)
    mixed.insert_many([6, 5, 6, 7])
    assert [mixed.index_of(v) for v in (5, 6, 7)] == [0, 1, 5]
    mixed.remove(1)
    assert mixed.index_of(6) == 2
    mixed.remove(2)
    assert mixed.index_of(6) == 4
    mixed.update(4, 5)
    assert mixed.index_of(6) is None and mixed.index_of(5) == 0
    mixed.remove(0)
    mixed.remove(3)
    assert mixed.index_of(5) == 4
    assert mixed.root == naive_root([0, 0, 0, 0, 5, 7])
    assert LeanIMT.import_(dup["export"], unique=False).index_of(leaves[1]) == 1


def test_js_error_cases_are_errors_here() -> None:
    errors = VECTORS["errors"]
    assert all(isinstance(message, str) for message in errors.values())
    with pytest.raises(TreeError, match="no leaves"):
        LeanIMT().insert_many([])
    with pytest.raises(TreeError, match="cannot be 0"):
        LeanIMT().insert(0)
    with pytest.raises(TreeError, match="cannot be 0"):
        LeanIMT().insert_many([1, 0])
    tree = LeanIMT(leaves=LEAVES[:3])
    tree.remove(1)
    for index in (-1, 3):
        with pytest.raises(TreeError, match="no leaf at index"):
            tree.generate_proof(index)
    with pytest.raises(TreeError, match="removed"):
        tree.update(1, 5)
    with pytest.raises(TreeError, match="already been removed"):
        tree.remove(1)


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [R, R + 1, -1, 1 << 256])
def test_leaves_outside_the_field_are_rejected(bad: int) -> None:
    tree = LeanIMT(leaves=[1, 2])
    for action in (lambda: tree.insert(bad), lambda: tree.insert_many([3, bad]), lambda: tree.update(0, bad)):
        with pytest.raises(FieldError):
            action()
    assert tree.leaves == [1, 2] and tree.root == poseidon2(1, 2)


@pytest.mark.parametrize("bad", [True, 1.0, "1", b"\x01", None])
def test_leaves_must_be_ints(bad: Any) -> None:
    with pytest.raises(FieldError):
        LeanIMT().insert(bad)


def test_insert_many_is_atomic() -> None:
    tree = LeanIMT(leaves=[1, 2, 3])
    before = tree.export()
    for batch in ([4, 5, 0], [4, 5, 2], [4, 4], [4, R]):
        with pytest.raises(ValueError):
            tree.insert_many(batch)
        assert tree.export() == before and tree.index_of(4) is None


def test_unique_rules() -> None:
    tree = LeanIMT(leaves=[10, 20, 30])
    with pytest.raises(TreeError):
        tree.insert(20)
    with pytest.raises(TreeError):
        tree.update(0, 30)
    with pytest.raises(TreeError):
        tree.update(0, 10)  # as LeanIMT.sol: the new leaf must not be in the tree
    with pytest.raises(TreeError, match="remove"):
        tree.update(0, 0)
    tree.remove(1)
    assert not tree.has(20) and tree.index_of(20) is None
    assert not tree.has(0) and tree.index_of(0) is None
    tree.insert(20)  # a removed value may come back, at a new index
    assert tree.index_of(20) == 3 and tree.leaves == [10, 0, 30, 20]
    tree.update(0, 11)
    assert tree.index_of(11) == 0 and tree.index_of(10) is None and tree.leaf(0) == 11


@pytest.mark.parametrize("index", [-1, 3, True, 1.0, "0", None])
def test_bad_indices(index: Any) -> None:
    tree = LeanIMT(leaves=[1, 2, 3])
    for action in (tree.generate_proof, tree.remove, tree.leaf, lambda i: tree.update(i, 9)):
        with pytest.raises(TreeError):
            action(index)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}",
        "[]",
        "[[1]]",
        '[["01"]]',
        '[[" 1"]]',
        '[["0x1"]]',
        '[["-1"]]',
        f'[["{R}"]]',
        '["1"]',
        '[[],["1"]]',
        '[["1"],["1"]]',
        '[["1","2"]]',
        '[["1","2"],["3","4"]]',
        '[["1","2","3"],["4"],["5"]]',
        '[["1","1"],["7"]]',
        "not json",
        '[["1"]',
    ],
)
def test_import_rejects_malformed_exports(text: str) -> None:
    with pytest.raises(ValueError):
        LeanIMT.import_(text, verify=False)


def test_import_checks_hashes() -> None:
    tree = LeanIMT(leaves=LEAVES[:9])
    levels = json.loads(tree.export())
    levels[1][2] = str(int(levels[1][2]) ^ 1)
    forged = json.dumps(levels, separators=(",", ":"))
    with pytest.raises(TreeError, match="does not match"):
        LeanIMT.import_(forged)
    assert LeanIMT.import_(forged, verify=False).export() == forged
    levels = json.loads(tree.export())
    levels[-2][-1] = str(int(levels[-2][-1]) + 1)  # a carried node that no longer equals its child
    with pytest.raises(TreeError):
        LeanIMT.import_(json.dumps(levels))
    with pytest.raises(TreeError):
        LeanIMT.import_(b"[[]]")  # type: ignore[arg-type]


def test_proof_object() -> None:
    tree = LeanIMT(leaves=LEAVES[:5])
    proof = tree.generate_proof(4)
    assert proof.siblings == (naive_root(LEAVES[:4]),) and proof.index == 1
    assert MerkleProof.from_dict(proof.to_dict()) == proof
    assert MerkleProof(proof.root, proof.leaf, proof.index, list(proof.siblings)) == proof  # type: ignore[arg-type]
    with pytest.raises(FieldError):
        MerkleProof(R, proof.leaf, proof.index, proof.siblings)
    with pytest.raises(FieldError):
        MerkleProof(proof.root, proof.leaf, proof.index, (R,))
    with pytest.raises(TreeError):
        MerkleProof(proof.root, proof.leaf, -1, proof.siblings)
    with pytest.raises(TreeError):
        MerkleProof(proof.root, proof.leaf, True, proof.siblings)
    with pytest.raises(ValueError):
        MerkleProof.from_dict({**proof.to_dict(), "root": "0x1"})
    with pytest.raises(TreeError):
        MerkleProof.from_dict({**proof.to_dict(), "extra": 1})
    with pytest.raises(TreeError):
        LeanIMT.verify_proof(proof.to_dict())  # type: ignore[arg-type]


def test_single_leaf_tree() -> None:
    tree = LeanIMT(leaves=[42])
    proof = tree.generate_proof(0)
    assert (tree.root, tree.depth, proof.index, proof.siblings) == (42, 0, 0, ())
    assert LeanIMT.verify_proof(proof)
    tree.remove(0)
    assert tree.root == 0 and tree.size == 1


def test_circuit_inputs() -> None:
    tree = LeanIMT(leaves=LEAVES[:5])
    proof = tree.generate_proof(4)  # the 5th leaf is carried up twice: one sibling
    assert len(proof.siblings) == 1 and proof.index == 1
    length, index, siblings = merkle_proof_to_circuit_inputs(proof)
    assert (length, index, siblings) == (1, 1, list(proof.siblings))
    padded = merkle_proof_to_circuit_inputs(proof, 20)
    assert padded.merkle_proof_length == 1 and padded.merkle_proof_index == 1
    assert padded.merkle_proof_siblings == [*proof.siblings] + [0] * 19
    one = merkle_proof_to_circuit_inputs(LeanIMT(leaves=[7]).generate_proof(0))
    assert one == (0, 0, [0])  # generateProof picks depth 1 for a one-member group
    full = tree.generate_proof(1)
    assert merkle_proof_to_circuit_inputs(full).merkle_proof_siblings == list(full.siblings)
    for depth in (0, 33, True, 2.0, 2):
        with pytest.raises(TreeError):
            merkle_proof_to_circuit_inputs(full, depth)  # type: ignore[arg-type]
    with pytest.raises(TreeError):
        merkle_proof_to_circuit_inputs(MerkleProof(full.root, full.leaf, 8, full.siblings))


# -- properties -------------------------------------------------------------------------

field_leaves = st.lists(st.integers(min_value=1, max_value=R - 1), min_size=1, max_size=48, unique=True)


@settings(max_examples=25, deadline=None)
@given(leaves=field_leaves, data=st.data())
def test_every_proof_verifies(leaves: list[int], data: st.DataObject) -> None:
    tree = LeanIMT(leaves=leaves)
    assert tree.root == naive_root(leaves)
    for index in data.draw(st.lists(st.integers(0, len(leaves) - 1), min_size=1, max_size=6)):
        proof = tree.generate_proof(index)
        assert proof.leaf == leaves[index] and proof.root == tree.root
        assert LeanIMT.verify_proof(proof, poseidon2)
        assert tree.index_of(leaves[index]) == index


@settings(max_examples=25, deadline=None)
@given(leaves=field_leaves, data=st.data())
def test_batches_match_sequential_inserts(leaves: list[int], data: st.DataObject) -> None:
    sequential = LeanIMT()
    for leaf in leaves:
        sequential.insert(leaf)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(leaves)), max_size=4)))
    batched = LeanIMT()
    for lo, hi in zip([0, *cuts], [*cuts, len(leaves)]):
        if hi > lo:
            batched.insert_many(leaves[lo:hi])
    assert batched.export() == sequential.export()
    assert batched.depth == (len(leaves) - 1).bit_length()


@settings(max_examples=25, deadline=None)
@given(leaves=field_leaves, data=st.data())
def test_update_then_revert_restores_root(leaves: list[int], data: st.DataObject) -> None:
    tree = LeanIMT(leaves=leaves)
    before = tree.export()
    index = data.draw(st.integers(0, len(leaves) - 1))
    new_leaf = data.draw(st.integers(1, R - 1).filter(lambda v: v not in leaves))
    tree.update(index, new_leaf)
    assert tree.root == naive_root(tree.leaves) != 0
    assert LeanIMT.verify_proof(tree.generate_proof(index))
    tree.update(index, leaves[index])
    assert tree.export() == before
    tree.remove(index)
    assert tree.root == naive_root(tree.leaves)


@settings(max_examples=25, deadline=None)
@given(leaves=field_leaves.filter(lambda v: len(v) >= 2), data=st.data())
def test_tampered_proofs_fail(leaves: list[int], data: st.DataObject) -> None:
    tree = LeanIMT(leaves=leaves)
    proof = tree.generate_proof(data.draw(st.integers(0, len(leaves) - 1)))
    n = len(proof.siblings)
    assert n >= 1
    k = data.draw(st.integers(0, n - 1))
    delta = data.draw(st.integers(1, 1 << 64))
    bumped = list(proof.siblings)
    bumped[k] = (bumped[k] + delta) % R
    forgeries = [
        MerkleProof(proof.root, (proof.leaf + delta) % R, proof.index, proof.siblings),
        MerkleProof((proof.root + delta) % R, proof.leaf, proof.index, proof.siblings),
        MerkleProof(proof.root, proof.leaf, proof.index, tuple(bumped)),
        MerkleProof(proof.root, proof.leaf, proof.index ^ (1 << k), proof.siblings),
        MerkleProof(proof.root, proof.leaf, proof.index | (1 << n), proof.siblings),  # non-canonical index
        MerkleProof(proof.root, proof.leaf, proof.index, proof.siblings[:-1]),
        MerkleProof(proof.root, proof.leaf, proof.index, (*proof.siblings, proof.root)),
    ]
    assert LeanIMT.verify_proof(proof)
    for forged in forgeries:
        assert not LeanIMT.verify_proof(forged)


# -- live cross-check with the JS libraries -----------------------------------------------


def random_ops(rng: random.Random, tree: LeanIMT, count: int) -> list[dict[str, Any]]:
    """Random valid group operations, applied to ``tree`` as they are drawn."""
    ops: list[dict[str, Any]] = []
    fresh = lambda: rng.choice([rng.randrange(1, 1 << 16), rng.randrange(1, R)])  # noqa: E731
    while len(ops) < count:
        live = [i for i, v in enumerate(tree.leaves) if v]
        roll = rng.random()
        if roll < 0.35 or not live:
            op: dict[str, Any] = {"op": "insert", "leaf": str(fresh())}
        elif roll < 0.55:
            op = {"op": "insert_many", "leaves": [str(fresh()) for _ in range(rng.choice([1, 2, 3, 7, 16, 33, 64]))]}
        elif roll < 0.8:
            op = {"op": "update", "index": rng.choice(live), "leaf": str(fresh())}
        else:
            op = {"op": "remove", "index": rng.choice(live)}
        try:
            apply(tree, op)
        except TreeError:  # a random value collided with a present leaf: draw again
            continue
        ops.append(op)
    return ops


@needs_node
def test_live_random_operations() -> None:
    rng = random.Random(0x1EA41)
    tree = LeanIMT()
    ops = random_ops(rng, tree, 120)
    indices = sorted(set(rng.sample(range(tree.size), min(tree.size, 40)) + [0, tree.size - 1]))
    ours = [tree.generate_proof(i) for i in indices]
    result = run_js("tree_ops.mjs", {"ops": ops, "proof_indices": indices, "verify": [p.to_dict() for p in ours]})
    replay = LeanIMT()
    for op, js_state in zip(ops, result["states"], strict=True):
        apply(replay, op)
        assert state(replay) == js_state, op
    assert result["export"] == tree.export()
    assert [p.to_dict() for p in ours] == result["proofs"]
    assert all(result["verified"])
    for p in result["proofs"]:
        assert LeanIMT.verify_proof(MerkleProof.from_dict(p))


@needs_node
def test_live_continue_from_python_export() -> None:
    rng = random.Random(7)
    tree = LeanIMT(leaves=LEAVES[:77])
    tree.remove(76)
    tree.remove(3)
    exported = tree.export()
    ops = random_ops(rng, tree, 30)
    result = run_js("tree_ops.mjs", {"initial": exported, "ops": ops, "proof_indices": list(range(tree.size))})
    assert result["states"][-1] == state(tree)
    assert result["export"] == tree.export()
    assert result["proofs"] == [tree.generate_proof(i).to_dict() for i in range(tree.size)]
    # A forged proof is refused by both sides.
    forged = tree.generate_proof(5).to_dict()
    forged["siblings"][0] = str((int(forged["siblings"][0]) + 1) % R)
    check = run_js("tree_ops.mjs", {"verify": [forged]})
    assert check["verified"] == [False]
    assert not LeanIMT.verify_proof(MerkleProof.from_dict(forged))
