"""The Authorizer's checks, in the documented order, on real proofs (official keys)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from registry.service.authorization import (
    Authorizer,
    GroupPolicy,
    MemoryNullifierStore,
    Reason,
    RootStatus,
    SqliteNullifierStore,
    StaticRoots,
)
from tests.support.clock import FakeClock
from tests.support.wait import run_threads
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message, digest_blob
from zk.tree import LeanIMT

#: The deployment the groups of these tests belong to, and another one (another chain's
#: registry at the same address): docs/authorization.md, LZE2.
HOME = RegistryRef(31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")
ELSEWHERE = RegistryRef(8453, "0x5fbdb2315678afecb367f032d93f642f64180aa3")
EPOCH = 600
NOW = 1_800_000_300.0  # a fixed clock, mid-epoch 3_000_000
BLOB = digest_blob(b"ciphertext")


@pytest.fixture(scope="module")
def setup() -> tuple[LeanIMT, Identity, SemaphoreProof]:
    members = [Identity(f"member-{i}") for i in range(5)]
    tree = LeanIMT(leaves=[m.commitment for m in members])
    scope = RelayScope.of(HOME, 3, int(NOW // EPOCH), 1).encode()
    proof = generate_proof(members[2], tree, blob_message(BLOB), scope)
    return tree, members[2], proof


def make(tree: LeanIMT, now: float = NOW, store: object | None = None) -> tuple[Authorizer, StaticRoots]:
    roots = StaticRoots(window=3600)
    roots.set_current(3, tree.root, now)
    auth = Authorizer(
        {3: GroupPolicy(3, epoch_length=EPOCH, message_limit=2, clock_skew=30)},
        roots,
        store or MemoryNullifierStore(),  # type: ignore[arg-type]
        clock=lambda: now,
        registry=HOME,
    )
    return auth, roots


def test_accept_once_then_replay(setup: tuple[LeanIMT, Identity, SemaphoreProof]) -> None:
    tree, _, proof = setup
    auth, _ = make(tree)
    first = auth.authorize(proof, 3, BLOB)
    assert first.authorized and first.reason is Reason.OK
    assert first.nullifier == proof.nullifier and first.epoch == int(NOW // EPOCH)
    again = auth.authorize(proof.to_json(), 3, BLOB)
    assert not again.authorized and again.reason is Reason.NULLIFIER_REUSED


def test_refusals_in_order(setup: tuple[LeanIMT, Identity, SemaphoreProof]) -> None:
    tree, _, proof = setup
    auth, roots = make(tree)
    assert auth.authorize("{", 3, BLOB).reason is Reason.MALFORMED
    assert auth.authorize(proof, 3, b"short").reason is Reason.MALFORMED
    assert auth.authorize(proof, 9, BLOB).reason is Reason.UNKNOWN_GROUP
    assert auth.authorize(proof, 3, digest_blob(b"other")).reason is Reason.MESSAGE_MISMATCH
    late, _ = make(tree, now=NOW + EPOCH)
    assert late.authorize(proof, 3, BLOB).reason is Reason.WRONG_EPOCH
    tampered = SemaphoreProof.from_dict({**proof.to_dict(), "nullifier": str(proof.nullifier ^ 1)})
    assert auth.authorize(tampered, 3, BLOB).reason is Reason.INVALID_PROOF
    # an invalid proof never burns the member's slot
    assert auth.authorize(proof, 3, BLOB).reason is Reason.OK
    other = LeanIMT(leaves=[Identity("stranger").commitment])
    roots2 = StaticRoots()
    roots2.set_current(3, other.root, NOW)
    assert Authorizer({3: GroupPolicy(3, epoch_length=EPOCH)}, roots2, MemoryNullifierStore(), clock=lambda: NOW, registry=HOME).authorize(
        proof, 3, BLOB
    ).reason is Reason.UNKNOWN_ROOT


def test_expired_root_after_window(setup: tuple[LeanIMT, Identity, SemaphoreProof]) -> None:
    tree, _, proof = setup
    roots = StaticRoots(window=100)
    roots.set_current(3, tree.root, NOW - 1000)
    roots.set_current(3, 12345, NOW - 500)  # superseded 500 s ago, window 100 s
    assert roots.root_status(3, tree.root, NOW) is RootStatus.EXPIRED
    auth = Authorizer({3: GroupPolicy(3, epoch_length=EPOCH, message_limit=2)}, roots, MemoryNullifierStore(), clock=lambda: NOW, registry=HOME)
    assert auth.authorize(proof, 3, BLOB).reason is Reason.EXPIRED_ROOT
    roots.window = 1000
    assert auth.authorize(proof, 3, BLOB).reason is Reason.OK


def test_scope_checks(setup: tuple[LeanIMT, Identity, SemaphoreProof]) -> None:
    tree, member, _ = setup
    auth, _ = make(tree)
    epoch = int(NOW // EPOCH)
    for scope, reason in [
        (12345, Reason.BAD_SCOPE),
        # version 1 (group, epoch, slot; no registry): refused by its version, never read as LZE2
        (int.from_bytes(b"LZE1" + (3).to_bytes(8, "big") + epoch.to_bytes(8, "big") + bytes(12), "big"), Reason.SCOPE_VERSION_UNSUPPORTED),
        (RelayScope.of(ELSEWHERE, 3, epoch, 0).encode(), Reason.WRONG_REGISTRY),
        (RelayScope.of(RegistryRef(HOME.chain_id, "0x" + "00" * 19 + "01"), 3, epoch, 0).encode(), Reason.WRONG_REGISTRY),
        (RelayScope.of(HOME, 4, epoch, 0).encode(), Reason.WRONG_GROUP),
        (RelayScope.of(HOME, 3, epoch, 2).encode(), Reason.SLOT_OUT_OF_RANGE),
    ]:
        # the cheap checks run before the pairing, so a fake (unverifiable) proof shows them
        fake = SemaphoreProof.from_dict(
            {"merkleTreeDepth": 3, "merkleTreeRoot": str(tree.root), "nullifier": "1",
             "message": str(blob_message(BLOB)), "scope": str(scope), "points": [str(p) for p in setup[2].points]}
        )
        assert auth.authorize(fake, 3, BLOB).reason is reason


def test_a_proof_for_one_registrys_group_is_refused_by_another(setup: tuple[LeanIMT, Identity, SemaphoreProof]) -> None:
    """Two deployments whose group 3 has the same members (so the same roots): a real proof
    made for HOME's group 3 is refused as ELSEWHERE's group 3 (``wrong_registry``) and
    burns no slot there, while HOME accepts it; the member's proof for ELSEWHERE has
    another nullifier (nothing links the member's sends in the two regions)."""
    tree, member, proof = setup
    roots = StaticRoots(window=3600)
    roots.set_current(3, tree.root, NOW)
    policy = {3: GroupPolicy(3, epoch_length=EPOCH, message_limit=2, clock_skew=30)}
    elsewhere = Authorizer(policy, roots, MemoryNullifierStore(), clock=lambda: NOW, registry=ELSEWHERE)
    decision = elsewhere.authorize(proof, 3, BLOB)
    assert not decision.authorized and decision.reason is Reason.WRONG_REGISTRY
    home, _ = make(tree)
    assert home.authorize(proof, 3, BLOB).reason is Reason.OK
    there = generate_proof(member, tree, blob_message(BLOB), RelayScope.of(ELSEWHERE, 3, int(NOW // EPOCH), 1).encode())
    assert there.nullifier != proof.nullifier
    assert elsewhere.authorize(there, 3, BLOB).reason is Reason.OK
    assert home.authorize(there, 3, BLOB).reason is Reason.WRONG_REGISTRY


def test_sql_nullifier_claim_is_atomic(tmp_path: Path, database_url: str | None) -> None:
    """On both backends (test_authorization_nullifiers.py: replicas, restarts)."""
    from registry.storage.database import open_store_database

    def open_store() -> SqliteNullifierStore:
        return SqliteNullifierStore(open_store_database(database_url, tmp_path, "n.sqlite", durable=True))

    store = open_store()
    wins: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        ok = store.claim(1, 777, 10)
        with lock:
            wins.append(ok)

    run_threads(claim, 16)
    assert wins.count(True) == 1
    # durable: a new connection sees it
    other = open_store()
    assert not other.claim(1, 777, 10)
    other.close()
    assert store.claim(2, 777, 10)  # other group, other namespace
    assert store.purge(1, 11) == 1 and store.claim(1, 777, 12)
    store.close()


# ---------------------------------------------------------------- limits at the boundaries


def test_skew_of_half_an_epoch_is_refused_by_the_policy() -> None:
    with pytest.raises(ValueError, match="less than epoch_length / 2"):
        GroupPolicy(3, epoch_length=600, clock_skew=300)
    GroupPolicy(3, epoch_length=600, clock_skew=299)


def test_the_worst_case_schedule_of_one_identity(tmp_path: Path) -> None:
    """The adversary's best schedule (docs/authorization.md, "Worst-case send rate") against
    the real Authorizer, real proofs and a durable nullifier store: one member has
    ``3 x limit`` sends accepted within ``epoch_length - 2 x skew + 1`` seconds, as
    ``worst_case_sends`` says, and the same schedule squeezed into ``epoch_length - 2 x skew``
    seconds gets only ``2 x limit``."""
    from zk.relay_scope import worst_case_sends

    skew, limit = 30, 2
    member = Identity("greedy-member")
    tree = LeanIMT(leaves=[member.commitment, Identity("bystander").commitment])
    e = int(NOW // EPOCH)
    proofs = {
        (epoch, slot): generate_proof(member, tree, blob_message(BLOB), RelayScope.of(HOME, 3, epoch, slot).encode())
        for epoch in (e - 1, e, e + 1)
        for slot in range(limit)
    }
    roots = StaticRoots(window=3600)
    roots.set_current(3, tree.root, NOW - 10_000)
    clock = FakeClock(e * EPOCH + skew - 1)  # epoch e began 29 s ago: e - 1 is still accepted
    store = SqliteNullifierStore(tmp_path / "nullifiers.sqlite")
    auth = Authorizer({3: GroupPolicy(3, EPOCH, limit, skew)}, roots, store, clock=clock, registry=HOME)
    accepted: list[float] = []

    def send(epoch: int, slot: int) -> Reason:
        decision = auth.authorize(proofs[(epoch, slot)], 3, BLOB)
        if decision.authorized:
            accepted.append(clock.now)
        return decision.reason

    start = clock.now
    assert [send(e - 1, s) for s in range(limit)] == [Reason.OK] * limit
    assert [send(e, s) for s in range(limit)] == [Reason.OK] * limit
    assert send(e + 1, 0) is Reason.WRONG_EPOCH  # too early for the next one (and no slot burnt)
    clock.now = (e + 1) * EPOCH - skew  # the next epoch is accepted skew seconds early
    assert send(e + 1, 0) is Reason.OK and send(e + 1, 1) is Reason.OK
    assert send(e, 0) is Reason.NULLIFIER_REUSED and send(e - 1, 1) is Reason.WRONG_EPOCH
    window = clock.now - start
    assert window == EPOCH - 2 * skew + 1
    assert len(accepted) == 3 * limit == worst_case_sends(window, EPOCH, skew, limit)
    assert worst_case_sends(EPOCH - 2 * skew, EPOCH, skew, limit) == 2 * limit
    store.close()

    # One second later the previous epoch is no longer accepted: the same sends within
    # exactly epoch_length - 2 x skew seconds reach only 2 x limit.
    clock.now = e * EPOCH + skew
    fresh = Authorizer({3: GroupPolicy(3, EPOCH, limit, skew)}, roots, MemoryNullifierStore(), clock=clock, registry=HOME)
    assert fresh.authorize(proofs[(e - 1, 0)], 3, BLOB).reason is Reason.WRONG_EPOCH


def test_two_limits_across_a_key_rotation_while_the_old_root_is_in_its_window() -> None:
    """A member who replaces its commitment (updateMember) holds two identities: the old one
    proves against the old root while that root is in its window (docs/authorization.md,
    "Key rotation"), so it can use 2 x limit in that epoch; never after the window."""
    old, new, other = Identity("rotating-old"), Identity("rotating-new"), Identity("rotation-bystander")
    before = LeanIMT(leaves=[old.commitment, other.commitment])
    after = LeanIMT(leaves=[new.commitment, other.commitment])
    e = int(NOW // EPOCH)
    scope = RelayScope.of(HOME, 3, e, 0).encode()
    with_old = generate_proof(old, before, blob_message(BLOB), scope)
    with_new = generate_proof(new, after, blob_message(BLOB), scope)
    roots = StaticRoots(window=100)
    roots.set_current(3, before.root, NOW - 1000)
    roots.set_current(3, after.root, NOW - 50)  # the rotation, 50 s ago: the old root is in its window
    clock = FakeClock(NOW)
    auth = Authorizer({3: GroupPolicy(3, EPOCH, 1, 30)}, roots, MemoryNullifierStore(), clock=clock, registry=HOME)
    assert auth.authorize(with_old, 3, BLOB).reason is Reason.OK
    assert auth.authorize(with_new, 3, BLOB).reason is Reason.OK  # limit 1, two sends in one epoch
    later = Authorizer({3: GroupPolicy(3, EPOCH, 1, 30)}, roots, MemoryNullifierStore(), clock=lambda: NOW + 51, registry=HOME)
    assert later.authorize(with_old, 3, BLOB).reason is Reason.EXPIRED_ROOT
    assert later.authorize(with_new, 3, BLOB).reason is Reason.OK
