"""The Authorizer's checks, in the documented order, on real proofs (official keys)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from registry.authorization import (
    Authorizer,
    GroupPolicy,
    MemoryNullifierStore,
    Reason,
    RootStatus,
    SqliteNullifierStore,
    StaticRoots,
)
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RelayScope, blob_message, digest_blob
from zk.tree import LeanIMT

EPOCH = 600
NOW = 1_800_000_300.0  # a fixed clock, mid-epoch 3_000_000
BLOB = digest_blob(b"ciphertext")


@pytest.fixture(scope="module")
def setup() -> tuple[LeanIMT, Identity, SemaphoreProof]:
    members = [Identity(f"member-{i}") for i in range(5)]
    tree = LeanIMT(leaves=[m.commitment for m in members])
    scope = RelayScope(group_id=3, epoch=int(NOW // EPOCH), slot=1).encode()
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
    assert Authorizer({3: GroupPolicy(3, epoch_length=EPOCH)}, roots2, MemoryNullifierStore(), clock=lambda: NOW).authorize(
        proof, 3, BLOB
    ).reason is Reason.UNKNOWN_ROOT


def test_expired_root_after_window(setup: tuple[LeanIMT, Identity, SemaphoreProof]) -> None:
    tree, _, proof = setup
    roots = StaticRoots(window=100)
    roots.set_current(3, tree.root, NOW - 1000)
    roots.set_current(3, 12345, NOW - 500)  # superseded 500 s ago, window 100 s
    assert roots.root_status(3, tree.root, NOW) is RootStatus.EXPIRED
    auth = Authorizer({3: GroupPolicy(3, epoch_length=EPOCH, message_limit=2)}, roots, MemoryNullifierStore(), clock=lambda: NOW)
    assert auth.authorize(proof, 3, BLOB).reason is Reason.EXPIRED_ROOT
    roots.window = 1000
    assert auth.authorize(proof, 3, BLOB).reason is Reason.OK


def test_scope_checks(setup: tuple[LeanIMT, Identity, SemaphoreProof]) -> None:
    tree, member, _ = setup
    auth, _ = make(tree)
    epoch = int(NOW // EPOCH)
    for scope, reason in [
        (12345, Reason.BAD_SCOPE),
        (RelayScope(4, epoch, 0).encode(), Reason.WRONG_GROUP),
        (RelayScope(3, epoch, 2).encode(), Reason.SLOT_OUT_OF_RANGE),
    ]:
        # the cheap checks run before the pairing, so a fake (unverifiable) proof shows them
        fake = SemaphoreProof.from_dict(
            {"merkleTreeDepth": 3, "merkleTreeRoot": str(tree.root), "nullifier": "1",
             "message": str(blob_message(BLOB)), "scope": str(scope), "points": [str(p) for p in setup[2].points]}
        )
        assert auth.authorize(fake, 3, BLOB).reason is reason


def test_sqlite_nullifier_claim_is_atomic(tmp_path: Path) -> None:
    store = SqliteNullifierStore(tmp_path / "n.sqlite")
    wins: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        ok = store.claim(1, 777, 10)
        with lock:
            wins.append(ok)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    # durable: a new connection sees it
    assert not SqliteNullifierStore(tmp_path / "n.sqlite").claim(1, 777, 10)
    assert store.claim(2, 777, 10)  # other group, other namespace
    assert store.purge(1, 11) == 1 and store.claim(1, 777, 12)
