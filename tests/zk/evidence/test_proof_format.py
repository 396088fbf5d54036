"""zk.evidence.proof_format: C2SP tlog-proof build, strict parse and verification."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zk.evidence.merkle import MemoryTree, inclusion_proof, leaf_hash, root_hash
from zk.evidence.note import Checkpoint, NoteSigner, sign_checkpoint
from zk.evidence.proof_format import HEADER, TlogProof, TlogProofError, parse_tlog_proof, verify_tlog_proof

ORIGIN = "letro.example/evidence"
SIGNER = NoteSigner(ORIGIN, bytes(range(32)))
WITNESS = NoteSigner("witness.example", bytes(range(1, 33)))


def make(size: int = 11, index: int = 6, extra: bytes | None = None) -> tuple[TlogProof, MemoryTree]:
    tree = MemoryTree(leaf_hash(bytes([i])) for i in range(size))
    checkpoint = sign_checkpoint(Checkpoint(ORIGIN, size, root_hash(tree)), [SIGNER, WITNESS])
    return TlogProof(index, tuple(inclusion_proof(tree, index)), checkpoint, extra), tree


def test_format_follows_the_spec_layout() -> None:
    proof, tree = make(extra=b"age-v1.2.1-darwin-arm64.tar.gz")
    lines = proof.format().split("\n")
    assert lines[0] == HEADER == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"age-v1.2.1-darwin-arm64.tar.gz").decode()
    assert lines[2] == "index 6"
    hashes = lines[3 : 3 + len(proof.hashes)]
    assert [base64.b64decode(h) for h in hashes] == inclusion_proof(tree, 6)
    assert lines[3 + len(proof.hashes)] == ""
    assert "\n".join(lines[4 + len(proof.hashes) :]) == proof.checkpoint
    assert proof.checkpoint.startswith(f"{ORIGIN}\n11\n")


@pytest.mark.parametrize("extra", [None, b"x", bytes(range(256))])
def test_round_trip(extra: bytes | None) -> None:
    proof, _ = make(extra=extra)
    assert parse_tlog_proof(proof.format()) == proof
    assert parse_tlog_proof(proof.format().encode()) == proof


def test_single_leaf_tree_has_no_hash_lines() -> None:
    proof, _ = make(size=1, index=0)
    text = proof.format()
    assert text.startswith(f"{HEADER}\nindex 0\n\n{ORIGIN}\n1\n")
    assert parse_tlog_proof(text) == proof


def test_verify() -> None:
    proof, tree = make()
    cp = verify_tlog_proof(proof, tree.leaf_hash(6), [SIGNER.verifier()], ORIGIN)
    assert cp.size == 11
    # The witness cosignature alone is not the log's key.
    with pytest.raises(TlogProofError) as info:
        verify_tlog_proof(proof, tree.leaf_hash(6), [WITNESS.verifier()], ORIGIN)
    assert info.value.reason == "checkpoint"
    with pytest.raises(TlogProofError) as info:
        verify_tlog_proof(proof, tree.leaf_hash(5), [SIGNER.verifier()], ORIGIN)
    assert info.value.reason == "inclusion"
    with pytest.raises(TlogProofError) as info:
        verify_tlog_proof(proof, tree.leaf_hash(6), [SIGNER.verifier()], "other.example/log")
    assert info.value.reason == "checkpoint"


def _replace_line(text: str, number: int, new: str | None) -> str:
    lines = text.split("\n")
    if new is None:
        del lines[number]
    else:
        lines[number] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace(HEADER, "c2sp.org/tlog-proof@v2"),
        lambda t: "\n" + t,
        lambda t: t.replace("index 6", "index 06"),
        lambda t: t.replace("index 6", "index -6"),
        lambda t: t.replace("index 6", "index  6"),
        lambda t: t.replace("index 6", "Index 6"),
        lambda t: t.replace("index 6", "index 9223372036854775808"),
        lambda t: _replace_line(t, 1, None),  # no index line
        lambda t: _replace_line(t, 2, "AAAA"),  # hash of 3 bytes
        lambda t: _replace_line(t, 2, base64.b64encode(bytes(32)).decode().rstrip("=")),
        lambda t: _replace_line(t, 2, "not base64 at all!"),
        lambda t: t.replace("\n\n", "\n", 1),  # no separator before the checkpoint
        lambda t: t.split("\n\n", 1)[0] + "\n\nnot a checkpoint\n",
        lambda t: t[:-1],  # checkpoint note without final newline
        lambda t: t.replace("index 6", "extra \nindex 6"),  # empty extra
        lambda t: t.replace("index 6", "extra AAAA\nextra AAAA\nindex 6"),
        lambda t: t.replace("index 6", "index 6\nextra AAAA"),
    ],
)
def test_malformed_proofs(mutate: object) -> None:
    proof, _ = make()
    assert callable(mutate)
    text = mutate(proof.format())
    with pytest.raises(TlogProofError):
        parse_tlog_proof(text)


def test_constructor_validates() -> None:
    proof, _ = make()
    with pytest.raises(TlogProofError):
        TlogProof(-1, proof.hashes, proof.checkpoint)
    with pytest.raises(TlogProofError):
        TlogProof(0, (b"short",), proof.checkpoint)
    with pytest.raises(TlogProofError):
        TlogProof(0, proof.hashes, proof.checkpoint, extra=b"")
    with pytest.raises(TlogProofError):
        TlogProof(0, proof.hashes, "garbage")


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
def test_parse_never_crashes(data: str | bytes) -> None:
    try:
        parse_tlog_proof(data)
    except TlogProofError:
        pass


@settings(max_examples=40, deadline=None)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_flipped_bit_never_verifies_another_statement(position: int, bit: int) -> None:
    proof, tree = make()
    raw = bytearray(proof.format().encode())
    raw[position % len(raw)] ^= 1 << bit
    try:
        parsed = parse_tlog_proof(bytes(raw))
        cp = verify_tlog_proof(parsed, tree.leaf_hash(parsed.index % tree.size), [SIGNER.verifier()], ORIGIN)
    except TlogProofError:
        return
    # Surviving flips can only touch unsigned, unverified parts (a witness signature).
    assert (parsed.index, parsed.hashes, cp.size) == (proof.index, proof.hashes, 11)
