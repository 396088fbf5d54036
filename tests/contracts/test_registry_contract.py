"""ZkIdRegistry on a real Anvil: adds, updates, removals, every rejection, root history.

Expected roots come from the real @zk-kit/lean-imt (tests/js/ledger_tree.mjs) and from the
Python reference ``zk.tree.LeanIMT``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.ledger import errors as E
from registry.ledger.deploy import Deployment
from registry.ledger.registry_contract import RegistryContract
from tests.jsbridge import run_js
from zk.field import R
from zk.tree import LeanIMT

pytestmark = pytest.mark.usefixtures("chain")


def js_steps(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ops through the JS LeanIMT; ints become decimal strings both ways."""

    def enc(op: dict[str, Any]) -> dict[str, Any]:
        return {k: ([str(x) for x in v] if isinstance(v, list) else str(v) if isinstance(v, int) else v) for k, v in op.items()}

    steps: list[dict[str, Any]] = run_js("ledger_tree.mjs", {"ops": [enc(op) for op in ops]})
    for step in steps:
        step["root"] = int(step["root"])
        if "siblings" in step:
            step["siblings"] = [int(s) for s in step["siblings"]]
    return steps


def apply_op(reg: RegistryContract, group: int, op: dict[str, Any], step: dict[str, Any]) -> Any:
    kind = op["op"]
    if kind == "add":
        return reg.add_member(group, op["leaf"])
    if kind == "addMany":
        return reg.add_members(group, op["leaves"])
    if kind == "update":
        return reg.update_member(group, op["old"], op["new"], step["siblings"])
    if kind == "remove":
        return reg.remove_member(group, op["leaf"], step["siblings"])
    raise AssertionError(kind)


def apply_py(tree: LeanIMT, op: dict[str, Any]) -> None:
    kind = op["op"]
    if kind == "add":
        tree.insert(op["leaf"])
    elif kind == "addMany":
        tree.insert_many(op["leaves"])
    elif kind == "update":
        index = tree.index_of(op["old"])
        assert index is not None
        tree.update(index, op["new"])
    else:
        index = tree.index_of(op["leaf"])
        assert index is not None
        tree.remove(index)


def test_default_group_belongs_to_deployer(deployed: Deployment) -> None:
    info = deployed.registry.group(0)
    assert info.admin == deployed.manifest.deployer
    assert (info.size, info.depth, info.root, info.root_window) == (0, 0, 0, 3600)
    assert deployed.registry.group_count() == 1
    created = deployed.registry.events(deployed.manifest.deployment_block, names=["GroupCreated"])
    assert [e.args["groupId"] for e in created] == [0]


def test_adds_updates_removals_match_reference_roots(deployed: Deployment) -> None:
    reg = deployed.registry
    ops: list[dict[str, Any]] = [
        {"op": "add", "leaf": 11},
        {"op": "add", "leaf": 22},
        {"op": "addMany", "leaves": [33, 44, 55]},
        {"op": "add", "leaf": 66},
        {"op": "update", "old": 33, "new": 333},
        {"op": "remove", "leaf": 66},
        {"op": "addMany", "leaves": list(range(100, 113))},
        {"op": "remove", "leaf": 11},
        {"op": "update", "old": 112, "new": 1112},
        {"op": "addMany", "leaves": [R - 1]},
        {"op": "add", "leaf": 7},
    ]
    steps = js_steps(ops)
    py_tree = LeanIMT()
    for op, step in zip(ops, steps, strict=True):
        receipt = apply_op(reg, 0, op, step)
        apply_py(py_tree, op)
        info = reg.group(0)
        assert info.root == step["root"] == py_tree.root, op
        assert (info.size, info.depth) == (step["size"], step["depth"]) == (py_tree.size, py_tree.depth)
        (event,) = reg.decode_receipt(receipt)
        assert event.args["newRoot"] == info.root
    assert not reg.has_member(0, 66) and not reg.has_member(0, 11)
    assert reg.has_member(0, 333) and reg.index_of(0, 333) == 2
    with pytest.raises(E.LeafDoesNotExist):
        reg.index_of(0, 33)


def test_events_rebuild_the_group(deployed: Deployment) -> None:
    reg = deployed.registry
    start = deployed.manifest.deployment_block
    group = reg.create_group(root_window=60)
    reg.add_members(group, [5, 6, 7, 8, 9])
    tree = LeanIMT(leaves=[5, 6, 7, 8, 9])
    reg.update_member(group, 6, 60, list(tree.generate_proof(1).siblings))
    tree.update(1, 60)
    reg.remove_member(group, 9, list(tree.generate_proof(4).siblings))
    tree.remove(4)
    reg.add_member(group, 10)

    rebuilt = LeanIMT()
    names = []
    for event in reg.group_events(group, start):
        names.append(event.name)
        args = event.args
        if event.name == "MemberAdded":
            rebuilt.insert(args["commitment"])
        elif event.name == "MembersAdded":
            rebuilt.insert_many(args["commitments"])
        elif event.name == "MemberUpdated":
            assert rebuilt.leaf(args["index"]) == args["oldCommitment"]
            rebuilt.update(args["index"], args["newCommitment"])
        elif event.name == "MemberRemoved":
            assert rebuilt.leaf(args["index"]) == args["commitment"]
            rebuilt.remove(args["index"])
        if "newRoot" in args:
            assert rebuilt.root == args["newRoot"]
    assert names == ["GroupCreated", "MembersAdded", "MemberUpdated", "MemberRemoved", "MemberAdded"]
    assert rebuilt.root == reg.root(group) and rebuilt.leaves == [5, 60, 7, 8, 0, 10]


def test_leaf_rejections(deployed: Deployment) -> None:
    reg = deployed.registry
    reg.add_members(0, [1, 2, 3])
    tree = LeanIMT(leaves=[1, 2, 3])
    proof_of_2 = list(tree.generate_proof(1).siblings)
    cases: list[tuple[Any, type[E.ContractRevert]]] = [
        (lambda: reg.add_member(0, 0), E.LeafCannotBeZero),
        (lambda: reg.add_member(0, R), E.LeafGreaterThanSnarkScalarField),
        (lambda: reg.add_member(0, 2**256 - 1), E.LeafGreaterThanSnarkScalarField),
        (lambda: reg.add_member(0, 2), E.LeafAlreadyExists),
        (lambda: reg.add_members(0, [4, 5, 4]), E.LeafAlreadyExists),
        (lambda: reg.add_members(0, [4, 0]), E.LeafCannotBeZero),
        (lambda: reg.add_members(0, [R]), E.LeafGreaterThanSnarkScalarField),
        (lambda: reg.add_members(0, []), E.EmptyBatch),
        (lambda: reg.update_member(0, 2, 3, proof_of_2), E.LeafAlreadyExists),
        (lambda: reg.update_member(0, 2, 0, proof_of_2), E.LeafCannotBeZero),
        (lambda: reg.update_member(0, 2, R, proof_of_2), E.LeafGreaterThanSnarkScalarField),
        (lambda: reg.update_member(0, 9, 10, proof_of_2), E.LeafDoesNotExist),
        (lambda: reg.update_member(0, 2, 10, [proof_of_2[0], proof_of_2[1] + 1]), E.WrongSiblingNodes),
        (lambda: reg.update_member(0, 2, 10, [proof_of_2[0], R]), E.LeafGreaterThanSnarkScalarField),
        (lambda: reg.update_member(0, 2, 10, proof_of_2[:1]), E.WrongSiblingCount),
        (lambda: reg.remove_member(0, 2, proof_of_2 + [5]), E.WrongSiblingCount),
        (lambda: reg.remove_member(0, 8, proof_of_2), E.LeafDoesNotExist),
    ]
    for call, error in cases:
        with pytest.raises(error):
            call()
    assert reg.root(0) == tree.root and reg.size(0) == 3
    with pytest.raises(E.WrongSiblingCount) as info:
        reg.update_member(0, 2, 10, [])
    assert info.value.args_dict == {"expected": 2, "given": 0}


def test_type_checks_happen_before_the_chain(deployed: Deployment) -> None:
    reg = deployed.registry
    for bad in (-1, 2**256, True, "5", 1.0):
        with pytest.raises(ValueError):
            reg.add_member(0, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        reg.set_root_window(0, 2**64)


def test_admin_rules(deployed: Deployment, make_transactor: Any) -> None:
    owner = deployed.registry
    other_tx = make_transactor(1)
    other = RegistryContract(owner.w3, owner.address, other_tx)

    with pytest.raises(E.CallerIsNotAdmin) as info:
        other.add_member(0, 5)
    assert info.value.args_dict == {"groupId": 0, "caller": other_tx.address}
    assert isinstance(info.value, E.AccessDenied)
    for call in (
        lambda: other.add_members(0, [5]),
        lambda: other.set_root_window(0, 1),
        lambda: other.transfer_admin(0, other_tx.address),
        lambda: other.update_member(0, 5, 6, []),
        lambda: other.remove_member(0, 5, []),
    ):
        with pytest.raises(E.CallerIsNotAdmin):
            call()
    with pytest.raises(E.GroupDoesNotExist) as missing:
        owner.add_member(7, 5)
    assert missing.value.args_dict == {"groupId": 7}
    with pytest.raises(E.GroupDoesNotExist):
        owner.group(7)
    with pytest.raises(E.AdminIsZeroAddress):
        owner.create_group("0x" + "00" * 20)

    # Two-step transfer: nothing changes until the new admin accepts.
    with pytest.raises(E.CallerIsNotPendingAdmin):
        other.accept_admin(0)
    owner.transfer_admin(0, other_tx.address)
    assert owner.pending_admin(0) == other_tx.address
    owner.add_member(0, 5)
    other.accept_admin(0)
    assert owner.group(0).admin == other_tx.address and owner.pending_admin(0) is None
    other.add_member(0, 6)
    with pytest.raises(E.CallerIsNotAdmin):
        owner.add_member(0, 7)
    names = [e.name for e in owner.group_events(0, deployed.manifest.deployment_block)]
    assert names[-4:] == ["GroupAdminTransferStarted", "MemberAdded", "GroupAdminTransferred", "MemberAdded"]

    # A group created for someone else belongs to them.
    group = owner.create_group(other_tx.address, 10)
    assert owner.group(group).admin == other_tx.address
    other.set_root_window(group, 20)
    assert owner.group(group).root_window == 20
    (event,) = owner.events(0, names=["RootWindowChanged"])
    assert event.args == {"groupId": group, "oldWindow": 10, "newWindow": 20}


def test_roots_stay_valid_for_the_window_after_being_superseded(deployed: Deployment, chain: Any) -> None:
    reg = deployed.registry
    group = reg.create_group(root_window=100)
    reg.add_member(group, 1)
    first = reg.root(group)
    chain.increase_time(10_000)  # idle: the current root never expires (semaphore#1093)
    assert reg.is_root_valid(group, first)
    receipt = reg.add_member(group, 2)
    second = reg.root(group)
    superseded_at = reg.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert reg.root_superseded_at(group, first) == superseded_at
    assert reg.root_superseded_at(group, second) == 0
    assert reg.is_root_valid(group, first) and reg.is_root_valid(group, second)

    chain.set_next_timestamp(superseded_at + 100)
    chain.mine()
    assert reg.is_root_valid(group, first)  # the last second of the window
    chain.increase_time(1)
    assert not reg.is_root_valid(group, first)
    assert reg.is_root_valid(group, second)
    assert not reg.is_root_valid(group, 0) and not reg.is_root_valid(group, 12345)

    # The window is read at check time: widening it revives a recently expired root.
    reg.set_root_window(group, 1000)
    assert reg.is_root_valid(group, first)


def test_first_add_records_no_history(deployed: Deployment) -> None:
    reg = deployed.registry
    group = reg.create_group()
    reg.add_member(group, 42)
    assert reg.root(group) == 42  # a one-leaf tree's root is the leaf
    assert reg.root_superseded_at(group, 0) == 0
    tree = LeanIMT(leaves=[42])
    reg.remove_member(group, 42, list(tree.generate_proof(0).siblings))
    assert reg.root(group) == 0 and not reg.is_root_valid(group, 0)
    assert reg.root_superseded_at(group, 42) > 0


op_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 10**6)),
        st.tuples(st.just("addMany"), st.lists(st.integers(1, 10**6), min_size=1, max_size=9)),
        st.tuples(st.just("update"), st.integers(0, 50)),
        st.tuples(st.just("remove"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_ops=op_strategy)
def test_random_histories_match_lean_imt(deployed: Deployment, anvil: Any, raw_ops: list[Any]) -> None:
    # Turn raw draws into a valid history (fresh leaves, existing targets), then check every
    # root against the JS LeanIMT.
    used: set[int] = set()
    live: list[int] = []
    ops: list[dict[str, Any]] = []
    fresh = iter(range(10**7, 10**8))
    for kind, arg in raw_ops:
        if kind == "add":
            leaf = arg if arg not in used else next(fresh)
            used.add(leaf)
            live.append(leaf)
            ops.append({"op": "add", "leaf": leaf})
        elif kind == "addMany":
            leaves = []
            for leaf in arg:
                leaf = leaf if leaf not in used else next(fresh)
                used.add(leaf)
                leaves.append(leaf)
            live.extend(leaves)
            ops.append({"op": "addMany", "leaves": leaves})
        elif live:
            target = live[arg % len(live)]
            if kind == "update":
                new = next(fresh)
                used.add(new)
                live[live.index(target)] = new
                ops.append({"op": "update", "old": target, "new": new})
            else:
                live.remove(target)
                ops.append({"op": "remove", "leaf": target})
    steps = js_steps(ops)
    snapshot = anvil.control.snapshot()
    try:
        reg = deployed.registry
        group = reg.create_group()
        for op, step in zip(ops, steps, strict=True):
            apply_op(reg, group, op, step)
            assert reg.root(group) == step["root"]
    finally:
        anvil.control.revert(snapshot)
        deployed.registry.tx.nonces.resync()  # type: ignore[union-attr]
