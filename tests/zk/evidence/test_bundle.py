"""zk.evidence.bundle: building and verifying evidence bundles; every kind of tamper is
caught, and reported under the right first-failure name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from zk.evidence import merkle
from zk.evidence.ack import prove_acknowledgement, sign_acknowledgement
from zk.evidence.bundle import (
    CHECK_NAMES,
    Anchor,
    BundleError,
    ConsistencyLink,
    EvidenceBundle,
    TrustedAnchor,
    Verdict,
    build_bundle,
    verify_bundle,
)
from zk.evidence.note import Checkpoint, NoteSigner, sign_checkpoint
from zk.evidence.proof_format import TlogProof
from zk.evidence.record import EventType, EvidenceRecord, ReasonCode, SignedRecord, sign_record
from zk.identity import Identity
from zk.tree import LeanIMT

ORIGIN = "letro.example/evidence/v1"
LOG = NoteSigner(ORIGIN, hashlib.sha256(b"log key").digest())
LOG_VKEY = LOG.verifier().vkey()
RELAY_KEY = hashlib.sha256(b"relay key").digest()
RELAY = Account.from_key(RELAY_KEY).address
CHAIN = 31337
CONTRACT = Account.from_key(b"\x09" * 32).address
BLOB = hashlib.sha256(b"ciphertext").digest()
T0 = 1_700_000_000
RECIPIENT_COMMITMENT = sign_acknowledgement(bytes(32), "recipient").commitment()


@dataclass
class World:
    tree: merkle.MemoryTree
    signed: list[SignedRecord]
    indices: list[int]
    ledger: dict[tuple[str, int], tuple[bytes, int]]

    def lookup(self, log_id: str, size: int) -> tuple[bytes, int] | None:
        return self.ledger.get((log_id, size))

    def checkpoint(self, size: int, signers: list[NoteSigner] | None = None, origin: str = ORIGIN) -> str:
        return sign_checkpoint(Checkpoint(origin, size, merkle.root_hash(self.tree, size)), signers or [LOG])

    def anchor(self, size: int, block_time: int = T0 + 600) -> Anchor:
        root = merkle.root_hash(self.tree, size)
        self.ledger[(ORIGIN, size)] = (root, block_time)
        return Anchor(CHAIN, CONTRACT, hashlib.sha256(b"tx%d" % size).digest(), 100 + size, block_time, size, root)

    def bundle(self, checkpoint_size: int = 40, anchor_size: int = 50, ack: Any = None) -> EvidenceBundle:
        return build_bundle(
            list(zip(self.signed, self.indices)),
            self.tree,
            self.checkpoint(checkpoint_size),
            self.anchor(anchor_size),
            LOG_VKEY,
            ack,
        )


def relay_record(event: EventType, t: int, links: tuple[bytes, ...] = (), **kw: Any) -> SignedRecord:
    rec = EvidenceRecord(chain_id=CHAIN, event=event, event_time=t, issuer=RELAY, blob_digest=BLOB,
                         region="eu-west", links=links, **kw)
    return sign_record(rec, RELAY_KEY)


@pytest.fixture(scope="module")
def world() -> World:
    s0 = relay_record(EventType.SUBMISSION_ACCEPTANCE, T0)
    s1 = relay_record(EventType.RELAY_ACCEPTANCE, T0 + 2, (s0.record.record_hash(),))
    s2 = relay_record(EventType.CONTENT_CONSIGNMENT, T0 + 5, (s1.record.record_hash(),))
    tree = merkle.MemoryTree()
    indices = []
    for i in range(60):  # other evidence around ours
        if i in (3, 17, 31):
            indices.append(tree.append([s0, s1, s2][len(indices)].record.leaf_hash()))
        else:
            tree.append_data(hashlib.sha256(b"other %d" % i).digest())
    return World(tree, [s0, s1, s2], indices, {})


def failure(verdict: Any) -> str | None:
    return verdict.first_failure  # type: ignore[no-any-return]


def trusted_verify(world: World, bundle: EvidenceBundle | str, **override: Any) -> Verdict:
    """verify_bundle with every trusted value of the verifier (``override`` replaces some)."""
    trust: dict[str, Any] = {
        "anchor_lookup": world.lookup,
        "trusted_issuers": {RELAY},
        "member_check": lambda c: c == RECIPIENT_COMMITMENT,
        "group_root_check": lambda r, t: False,
        "trusted_anchor": TrustedAnchor(CHAIN, CONTRACT),
    }
    trust.update(override)
    return verify_bundle(bundle, LOG_VKEY, **trust)


# --- Happy paths ---------------------------------------------------------------------


@pytest.mark.parametrize(("checkpoint_size", "anchor_size"), [(40, 50), (50, 40), (45, 45), (32, 60), (60, 32)])
def test_valid_bundle(world: World, checkpoint_size: int, anchor_size: int) -> None:
    bundle = world.bundle(checkpoint_size, anchor_size)
    verdict = trusted_verify(world, bundle)
    assert verdict.valid and verdict.complete is False  # no acknowledgement
    assert [c.name for c in verdict.checks] == list(CHECK_NAMES)
    assert [c.status for c in verdict.checks] == ["ok", "ok", "not_checked", "ok", "ok", "ok", "ok", "ok"]
    assert verdict.missing_trust == ()
    assert verdict.first_failure is None
    assert [e.label for e in verdict.timeline] == [
        "SubmissionAcceptance", "RelayAcceptance", "ContentConsignment", "Anchored"]
    assert [e.time for e in verdict.timeline] == [T0, T0 + 2, T0 + 5, T0 + 600]
    assert verdict.timeline[0].reference == world.signed[0].record.evidence_id()


def test_json_round_trip_and_text_input(world: World) -> None:
    bundle = world.bundle(ack=sign_acknowledgement(world.signed[2].record.record_hash(), "recipient"))
    text = bundle.to_json()
    assert EvidenceBundle.from_json(text) == bundle
    verdict = trusted_verify(world, text)
    assert verdict.valid and verdict.complete
    assert "commitment" in verdict.check("acknowledgement").detail


def test_without_ledger_lookup(world: World) -> None:
    verdict = trusted_verify(world, world.bundle(), anchor_lookup=None)
    assert verdict.passed and not verdict.valid and not verdict.complete
    assert verdict.check("anchor_on_ledger").status == "not_checked"
    assert verdict.missing_trust == ("anchor_on_ledger",)


# --- Trust: every check runs against the verifier's own values ----------------------


def test_without_any_trust_nothing_is_valid(world: World) -> None:
    # The offline checks pass, but no check that needs a trusted value counts as run.
    ack = sign_acknowledgement(world.signed[2].record.record_hash(), "recipient")
    verdict = verify_bundle(world.bundle(ack=ack), LOG_VKEY)
    assert verdict.passed and not verdict.valid and not verdict.complete
    assert verdict.missing_trust == ("record_issuer", "acknowledgement", "anchor_contract", "anchor_on_ledger")
    assert "no trusted relay keys" in verdict.check("record_issuer").detail
    assert "no trusted groups" in verdict.check("acknowledgement").detail


def test_self_signed_issuer_is_not_valid(world: World) -> None:
    # A record signed by a key of its own making: its signature verifies, its issuer is
    # not one of the verifier's relay keys.
    forger = b"\x42" * 32
    rec = dataclasses.replace(world.signed[0].record, issuer=Account.from_key(forger).address)
    signed = sign_record(rec, forger)
    tree = merkle.MemoryTree([signed.record.leaf_hash()])
    cp = sign_checkpoint(Checkpoint(ORIGIN, 1, merkle.root_hash(tree)), [LOG])
    anchor = Anchor(CHAIN, CONTRACT, bytes(32), 1, T0, 1, merkle.root_hash(tree))
    bundle = build_bundle([(signed, 0)], tree, cp, anchor, LOG_VKEY)
    verdict = trusted_verify(world, bundle, anchor_lookup=lambda log_id, size: (merkle.root_hash(tree), T0))
    assert not verdict.valid and verdict.first_failure == "record_issuer"
    assert verdict.check("record_signature").status == "ok"
    assert "not a trusted relay key" in verdict.check("record_issuer").detail


def test_trusted_issuers_compare_addresses_by_value(world: World) -> None:
    assert trusted_verify(world, world.bundle(), trusted_issuers={RELAY.lower()}).valid


def test_eddsa_acknowledgement_from_outside_the_trusted_groups(world: World) -> None:
    ack = sign_acknowledgement(world.signed[2].record.record_hash(), "someone else")
    verdict = trusted_verify(world, world.bundle(ack=ack))
    assert not verdict.valid and verdict.first_failure == "acknowledgement"
    assert "not a member of a trusted group" in verdict.check("acknowledgement").detail


def test_group_lookup_error_fails_closed(world: World) -> None:
    ack = sign_acknowledgement(world.signed[2].record.record_hash(), "recipient")
    verdict = trusted_verify(world, world.bundle(ack=ack), member_check=lambda c: 1 / 0)
    assert verdict.first_failure == "acknowledgement" and "lookup error" in verdict.check("acknowledgement").detail


def test_anchor_contract_comes_from_the_verifier(world: World) -> None:
    bundle = world.bundle()
    private_copy = Account.from_key(b"\x0a" * 32).address
    # The bundle names another contract (e.g. a private EvidenceAnchor copy): named failure.
    verdict = trusted_verify(world, bundle, trusted_anchor=TrustedAnchor(CHAIN, private_copy))
    assert not verdict.valid and verdict.first_failure == "anchor_contract"
    assert private_copy in verdict.check("anchor_contract").detail
    verdict = trusted_verify(world, bundle, trusted_anchor=TrustedAnchor(1, CONTRACT))
    assert verdict.first_failure == "anchor_contract"
    # Letter case of the configured address does not matter.
    assert trusted_verify(world, bundle, trusted_anchor=TrustedAnchor(CHAIN, CONTRACT.lower())).valid
    with pytest.raises(ValueError):
        TrustedAnchor(0, CONTRACT)


def test_semaphore_acknowledgement(world: World) -> None:
    members = [Identity(f"bundle-member-{i}") for i in range(2)]
    group = LeanIMT(leaves=[m.commitment for m in members])
    target = world.signed[2].record.record_hash()
    ack = prove_acknowledgement(members[0], group, target, BLOB)
    bundle = world.bundle(ack=ack)
    verdict = trusted_verify(world, bundle, group_root_check=None)
    assert verdict.passed and not verdict.valid and "not checked" in verdict.check("acknowledgement").detail
    assert verdict.missing_trust == ("acknowledgement",)
    assert trusted_verify(world, bundle, group_root_check=lambda r, t: r == group.root).complete
    # A one-member group of someone else's making: its root is not a trusted group's.
    bad_root = trusted_verify(world, bundle)
    assert failure(bad_root) == "acknowledgement" and "not a root of a trusted group" in bad_root.checks[2].detail
    # The same proof presented for another record of the bundle: message mismatch.
    moved = dataclasses.replace(ack, record_hash=world.signed[1].record.record_hash())
    assert failure(verify_bundle(dataclasses.replace(bundle, acknowledgement=moved), LOG_VKEY)) == "acknowledgement"


# --- Each tamper, and its first failure ----------------------------------------------


def _replace_entry(bundle: EvidenceBundle, i: int, **changes: Any) -> EvidenceBundle:
    entries = list(bundle.entries)
    entries[i] = dataclasses.replace(entries[i], **changes)
    return dataclasses.replace(bundle, entries=tuple(entries))


def _resign_checkpoint(world: World, bundle: EvidenceBundle, note: str) -> EvidenceBundle:
    entries = tuple(dataclasses.replace(e, proof=dataclasses.replace(e.proof, checkpoint=note)) for e in bundle.entries)
    return dataclasses.replace(bundle, entries=entries)


Tamper = Callable[[World, EvidenceBundle], EvidenceBundle]
OTHER_RELAY_KEY = b"\x77" * 32


def forge_time(w: World, b: EvidenceBundle) -> EvidenceBundle:
    e = b.entries[1]
    rec = dataclasses.replace(e.signed.record, event_time=e.signed.record.event_time - 1)
    return _replace_entry(b, 1, signed=SignedRecord(rec, e.signed.signature))


def foreign_signature(w: World, b: EvidenceBundle) -> EvidenceBundle:
    e = b.entries[0]
    other = sign_record(dataclasses.replace(e.signed.record, issuer=Account.from_key(OTHER_RELAY_KEY).address),
                        OTHER_RELAY_KEY)
    return _replace_entry(b, 0, signed=SignedRecord(e.signed.record, other.signature))


def other_blob(w: World, b: EvidenceBundle) -> EvidenceBundle:
    e = b.entries[2]
    rec = dataclasses.replace(e.signed.record, blob_digest=bytes(32))
    return _replace_entry(b, 2, signed=sign_record(rec, RELAY_KEY))


def ack_other_record(w: World, b: EvidenceBundle) -> EvidenceBundle:
    return dataclasses.replace(b, acknowledgement=sign_acknowledgement(b"\x01" * 32, "recipient"))


def ack_bad_signature(w: World, b: EvidenceBundle) -> EvidenceBundle:
    good = sign_acknowledgement(w.signed[2].record.record_hash(), "recipient")
    other = sign_acknowledgement(w.signed[1].record.record_hash(), "recipient")
    return dataclasses.replace(b, acknowledgement=dataclasses.replace(good, signature=other.signature))


def proof_hash_flipped(w: World, b: EvidenceBundle) -> EvidenceBundle:
    p = b.entries[1].proof
    hashes = list(p.hashes)
    hashes[2] = bytes([hashes[2][0] ^ 1]) + hashes[2][1:]
    return _replace_entry(b, 1, proof=dataclasses.replace(p, hashes=tuple(hashes)))


def proof_index_moved(w: World, b: EvidenceBundle) -> EvidenceBundle:
    p = b.entries[0].proof
    return _replace_entry(b, 0, proof=dataclasses.replace(p, index=p.index + 1))


def record_swapped(w: World, b: EvidenceBundle) -> EvidenceBundle:
    # A validly signed record that was never logged, presented with another's proof.
    unlogged = relay_record(EventType.RELAY_ACCEPTANCE, T0 + 3, (w.signed[0].record.record_hash(),))
    return _replace_entry(b, 1, signed=unlogged)


def checkpoint_by_other_key(w: World, b: EvidenceBundle) -> EvidenceBundle:
    impostor = NoteSigner(ORIGIN, b"\x66" * 32)
    return _resign_checkpoint(w, b, w.checkpoint(40, [impostor]))


def checkpoint_other_origin(w: World, b: EvidenceBundle) -> EvidenceBundle:
    return _resign_checkpoint(w, b, w.checkpoint(40, [LOG], origin="elsewhere.example/log"))


def bundle_names_other_key(w: World, b: EvidenceBundle) -> EvidenceBundle:
    return dataclasses.replace(b, log_key=NoteSigner(ORIGIN, b"\x66" * 32).verifier().vkey())


def checkpoint_signature_corrupted(w: World, b: EvidenceBundle) -> EvidenceBundle:
    note = b.checkpoint_note
    head, sig = note.rsplit(" ", 1)
    flipped = ("B" if sig[10] == "A" else "A").join((sig[:10], sig[11:]))
    return _resign_checkpoint(w, b, head + " " + flipped)


def consistency_hash_flipped(w: World, b: EvidenceBundle) -> EvidenceBundle:
    hashes = list(b.consistency.hashes)
    hashes[0] = bytes([hashes[0][0] ^ 0x80]) + hashes[0][1:]
    return dataclasses.replace(b, consistency=dataclasses.replace(b.consistency, hashes=tuple(hashes)))


def anchor_root_replaced(w: World, b: EvidenceBundle) -> EvidenceBundle:
    return dataclasses.replace(b, anchor=dataclasses.replace(b.anchor, root_hash=merkle.root_hash(w.tree, 49)))


def anchor_too_small(w: World, b: EvidenceBundle) -> EvidenceBundle:
    # A genuine anchor at size 31, which does not contain entry 31.
    small = w.anchor(31)
    link = ConsistencyLink(31, 40, tuple(merkle.consistency_proof(w.tree, 31, 40)))
    return dataclasses.replace(b, anchor=small, consistency=link)


def consistency_wrong_sizes(w: World, b: EvidenceBundle) -> EvidenceBundle:
    link = ConsistencyLink(40, 49, tuple(merkle.consistency_proof(w.tree, 40, 49)))
    return dataclasses.replace(b, consistency=link)


def anchor_other_chain(w: World, b: EvidenceBundle) -> EvidenceBundle:
    return dataclasses.replace(b, anchor=dataclasses.replace(b.anchor, chain_id=1))


def anchor_time_changed(w: World, b: EvidenceBundle) -> EvidenceBundle:
    return dataclasses.replace(b, anchor=dataclasses.replace(b.anchor, block_time=b.anchor.block_time - 3600))


def anchor_never_published(w: World, b: EvidenceBundle) -> EvidenceBundle:
    # A consistent, well-formed anchor at a size the ledger never recorded.
    anchor = Anchor(CHAIN, CONTRACT, bytes(32), 1, T0, 55, merkle.root_hash(w.tree, 55))
    link = ConsistencyLink(40, 55, tuple(merkle.consistency_proof(w.tree, 40, 55)))
    return dataclasses.replace(b, anchor=anchor, consistency=link)


TAMPERS: list[tuple[Tamper, str]] = [
    (forge_time, "record_signature"),
    (foreign_signature, "record_signature"),
    (other_blob, "record_signature"),
    (ack_other_record, "acknowledgement"),
    (ack_bad_signature, "acknowledgement"),
    (proof_hash_flipped, "inclusion_proof"),
    (proof_index_moved, "inclusion_proof"),
    (record_swapped, "inclusion_proof"),
    (checkpoint_by_other_key, "checkpoint_signature"),
    (checkpoint_other_origin, "checkpoint_signature"),
    (bundle_names_other_key, "checkpoint_signature"),
    (checkpoint_signature_corrupted, "checkpoint_signature"),
    (consistency_hash_flipped, "consistency_with_anchor"),
    (anchor_root_replaced, "consistency_with_anchor"),
    (anchor_too_small, "consistency_with_anchor"),
    (consistency_wrong_sizes, "consistency_with_anchor"),
    (anchor_other_chain, "consistency_with_anchor"),
    (anchor_time_changed, "anchor_on_ledger"),
    (anchor_never_published, "anchor_on_ledger"),
]


@pytest.mark.parametrize(("tamper", "expected"), TAMPERS, ids=[t.__name__ for t, _ in TAMPERS])
def test_tamper_is_caught(world: World, tamper: Tamper, expected: str) -> None:
    good = world.bundle(ack=sign_acknowledgement(world.signed[2].record.record_hash(), "recipient"))
    assert trusted_verify(world, good).complete
    bad = tamper(world, good)
    verdict = trusted_verify(world, bad)
    assert not verdict.valid
    assert verdict.first_failure == expected, verdict.checks
    # Through JSON too (unless the tamper cannot even be serialised faithfully).
    assert failure(trusted_verify(world, bad.to_json())) == expected


def test_untrusted_issuer(world: World) -> None:
    bundle = world.bundle()
    assert trusted_verify(world, bundle).valid
    assert failure(trusted_verify(world, bundle, trusted_issuers={CONTRACT})) == "record_issuer"
    assert failure(trusted_verify(world, bundle, trusted_issuers=set())) == "record_issuer"


def test_records_from_different_chains(world: World) -> None:
    bundle = world.bundle()
    rec = dataclasses.replace(bundle.entries[0].signed.record, chain_id=1)
    bad = _replace_entry(bundle, 0, signed=sign_record(rec, RELAY_KEY))
    assert failure(verify_bundle(bad, LOG_VKEY)) == "record_signature"


def test_failure_records_verify(world: World) -> None:
    rejected = relay_record(EventType.SUBMISSION_REJECTION, T0, reason=ReasonCode.NULLIFIER_REUSED)
    tree = merkle.MemoryTree([rejected.record.leaf_hash()])
    cp = sign_checkpoint(Checkpoint(ORIGIN, 1, merkle.root_hash(tree)), [LOG])
    anchor = Anchor(CHAIN, CONTRACT, bytes(32), 1, T0, 1, merkle.root_hash(tree))
    bundle = build_bundle([(rejected, 0)], tree, cp, anchor, LOG_VKEY)
    assert bundle.consistency.hashes == ()
    verdict = trusted_verify(world, bundle, anchor_lookup=lambda log_id, size: (merkle.root_hash(tree), T0))
    assert verdict.valid


@pytest.mark.parametrize(
    "lookup",
    [
        lambda log_id, size: None,
        lambda log_id, size: (bytes(32), 0),
        lambda log_id, size: "junk",
        lambda log_id, size: (b"x",),
        lambda log_id, size: 1 / 0,
    ],
)
def test_ledger_lookup_failures_fail_closed(world: World, lookup: Any) -> None:
    verdict = verify_bundle(world.bundle(), LOG_VKEY, lookup)
    assert verdict.first_failure == "anchor_on_ledger"


def test_ledger_lookup_receives_origin_and_size(world: World) -> None:
    seen = []

    def lookup(log_id: str, size: int) -> tuple[bytes, int] | None:
        seen.append((log_id, size))
        return world.lookup(log_id, size)

    assert trusted_verify(world, world.bundle(40, 50), anchor_lookup=lookup).valid
    assert seen == [(ORIGIN, 50)]


def test_all_checks_run_after_a_failure(world: World) -> None:
    verdict = verify_bundle(forge_time(world, world.bundle()), LOG_VKEY, world.lookup)
    statuses = {c.name: c.status for c in verdict.checks}
    # The forged record also leaves the tree: both failures are reported, in order.
    assert statuses["record_signature"] == "failed" and statuses["inclusion_proof"] == "failed"
    assert statuses["checkpoint_signature"] == "ok"
    assert verdict.first_failure == "record_signature"


# --- Building refuses inconsistent input ---------------------------------------------


def test_build_refuses_wrong_inputs(world: World) -> None:
    pairs = list(zip(world.signed, world.indices))
    with pytest.raises(BundleError):
        build_bundle([(world.signed[0], 4)], world.tree, world.checkpoint(40), world.anchor(50), LOG_VKEY)
    with pytest.raises(BundleError):
        build_bundle(pairs, world.tree, world.checkpoint(20), world.anchor(50), LOG_VKEY)  # entry 31 > size
    fake_cp = sign_checkpoint(Checkpoint(ORIGIN, 40, bytes(32)), [LOG])
    with pytest.raises(BundleError):
        build_bundle(pairs, world.tree, fake_cp, world.anchor(50), LOG_VKEY)
    with pytest.raises(BundleError):
        build_bundle(pairs, world.tree, world.checkpoint(40), Anchor(CHAIN, CONTRACT, bytes(32), 1, 1, 50, bytes(32)),
                     LOG_VKEY)


def test_structure_is_validated(world: World) -> None:
    bundle = world.bundle()
    other_cp = world.checkpoint(41)
    e0 = bundle.entries[0]
    mixed = (dataclasses.replace(e0, proof=TlogProof(e0.proof.index, (), other_cp)), *bundle.entries[1:])
    with pytest.raises(BundleError):
        dataclasses.replace(bundle, entries=mixed)  # two checkpoints
    with pytest.raises(BundleError):
        dataclasses.replace(bundle, entries=())
    with pytest.raises(BundleError):
        dataclasses.replace(bundle, entries=bundle.entries * 6)  # 18 > 16
    with pytest.raises(BundleError):
        dataclasses.replace(bundle, log_key="not a key")
    with pytest.raises(BundleError):
        dataclasses.replace(bundle, version=2)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d.pop("anchor"),
        lambda d: d.update(extra=None),
        lambda d: d.update(entries={}),
        lambda d: d["anchor"].update(treeSize=0),
        lambda d: d["anchor"].update(treeSize="50"),
        lambda d: d["anchor"].update(contract=d["anchor"]["contract"].lower()),
        lambda d: d["anchor"].update(rootHash=d["anchor"]["rootHash"][:-2]),
        lambda d: d["consistency"].update(proof=["AAAA"]),
        lambda d: d["consistency"].update(fromSize=0),
        lambda d: d["entries"][0].update(tlogProof=d["entries"][0]["tlogProof"].replace("index", "idx")),
        lambda d: d["entries"][0].pop("signature"),
        lambda d: d["entries"][0]["record"].update(region="EU"),
        lambda d: d.update(acknowledgement={"type": "unknown"}),
    ],
)
def test_malformed_json_is_a_format_failure(world: World, mutate: Any) -> None:
    data = json.loads(world.bundle().to_json())
    mutate(data)
    text = json.dumps(data)
    with pytest.raises(BundleError):
        EvidenceBundle.from_json(text)
    verdict = verify_bundle(text, LOG_VKEY, world.lookup)
    assert verdict.first_failure == "format" and not verdict.valid


@settings(max_examples=40, deadline=None)
@given(position=st.integers(0, 10**6), replacement=st.sampled_from(list("0123456789abcdefABCDEF+/=\"{}[],: \\\n")))
def test_random_edits_never_crash_or_change_meaning(world: World, position: int, replacement: str) -> None:
    original = world.bundle()
    text = original.to_json()
    i = position % len(text)
    edited = text[:i] + replacement + text[i + 1 :]
    verdict = trusted_verify(world, edited)
    if verdict.valid:
        got = EvidenceBundle.from_json(edited)
        # Only pointers the verifier does not rely on may differ (tx hash, block number:
        # the ledger check is by origin and size on the trusted contract).
        assert [e.signed for e in got.entries] == [e.signed for e in original.entries]
        assert got.checkpoint_note == original.checkpoint_note
        assert (got.anchor.chain_id, got.anchor.contract) == (original.anchor.chain_id, original.anchor.contract)
        assert (got.anchor.tree_size, got.anchor.root_hash, got.anchor.block_time) == (
            original.anchor.tree_size, original.anchor.root_hash, original.anchor.block_time)
