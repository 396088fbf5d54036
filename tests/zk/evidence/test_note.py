"""zk.evidence.note: C2SP signed-note / tlog-checkpoint against the Go sumdb/note test
vectors, the C2SP spec examples, @noble/curves (recorded and live), and strict parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk.evidence.note import (
    Checkpoint,
    NoteError,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
)

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "evidence.json").read_text("utf-8"))

# golang.org/x/mod/sumdb/note note_test.go.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

# https://c2sp.org/signed-note §Verifier keys, Example.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def peter() -> NoteVerifier:
    return NoteVerifier.from_vkey(PETER_VKEY)


def enoch() -> NoteVerifier:
    return NoteVerifier.from_vkey(ENOCH_VKEY)


# --- Keys ----------------------------------------------------------------------------


def test_go_keys_round_trip() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    assert signer.skey() == PETER_SKEY
    assert signer.verifier().vkey() == PETER_VKEY
    assert peter().key_id == 0xC74F20A3 == signer.key_id
    assert key_id("PeterNeumann", base64.b64decode(PETER_VKEY.split("+", 2)[2])) == 0xC74F20A3


def test_generated_keys_round_trip() -> None:
    signer = NoteSigner.generate("letro.example/evidence")
    again = NoteSigner.from_skey(signer.skey())
    assert again.verifier() == signer.verifier() == NoteVerifier.from_vkey(signer.verifier().vkey())
    assert open_note(sign_note("x\n", [again]), [signer.verifier()]).text == "x\n"


def _manglings(key: str) -> list[str]:
    """Go's TestNewVerifier/TestNewSigner: every proper substring and every byte + 1."""
    out = {key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)} - {key}
    b = bytearray(key.encode())
    for i in range(len(b)):
        b[i] += 1
        try:
            out.add(b.decode())
        except UnicodeDecodeError:
            pass
        b[i] -= 1
    return sorted(out)


def test_mangled_verifier_keys_are_refused() -> None:
    for bad in [
        *_manglings(PETER_VKEY),
        # Go's extra cases: wrong key length and unknown algorithm, with adjusted key IDs.
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case hex
    ]:
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(bad)


def test_mangled_signer_keys_are_refused() -> None:
    for bad in _manglings(PETER_SKEY):
        with pytest.raises(NoteError):
            NoteSigner.from_skey(bad)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0x", "ideo\u3000x", "nl\nx", "\udc80"])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(NoteError):
        NoteSigner(name, bytes(32))
    with pytest.raises(NoteError):
        NoteVerifier.from_public_key(name, bytes(32))


# --- Notes ---------------------------------------------------------------------------


def test_sign_matches_go() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    assert sign_note(TEXT, [signer]) == TEXT + "\n" + PETER_SIG
    # An older signature by the same key is replaced, as Go's Sign does.
    old = NoteSignature("PeterNeumann", 0xC74F20A3, b"\x00" * 64)
    assert sign_note(TEXT, [signer], keep=[old]) == TEXT + "\n" + PETER_SIG


def test_c2sp_example_verifies() -> None:
    note = open_note(C2SP_NOTE, [NoteVerifier.from_vkey(C2SP_VKEY)])
    assert note.text == "This is an example message.\n"
    assert [s.name for s in note.verified] == ["example.com/foo"]


def test_open_like_go() -> None:
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    one = open_note(msg, [peter()])
    assert one.text == TEXT
    assert [(s.name, s.key_id) for s in one.verified] == [("PeterNeumann", 0xC74F20A3)]
    assert [(s.name, s.key_id) for s in one.unverified] == [("EnochRoot", 0xAF0CFE78)]
    both = open_note(msg.encode(), [peter(), enoch()])
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"] and not both.unverified
    with pytest.raises(NoteError) as info:
        open_note(msg, [])
    assert info.value.reason == "no_known_signature"
    # Duplicate lines are reported once.
    dup = open_note(TEXT + "\n" + PETER_SIG * 2 + ENOCH_SIG * 2, [peter()])
    assert len(dup.verified) == 1 and len(dup.unverified) == 1


def test_open_refuses_too_many_signatures() -> None:
    open_note(TEXT + "\n" + PETER_SIG * 100, [peter()])
    with pytest.raises(NoteError):
        open_note(TEXT + "\n" + PETER_SIG * 101, [peter()])


def test_known_key_with_bad_signature_rejects_note() -> None:
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError) as info:
        open_note(TEXT + "\n" + bad, [peter()])
    assert info.value.reason == "invalid_signature"
    # Also when a valid signature from the same key is present.
    with pytest.raises(NoteError):
        open_note(TEXT + "\n" + PETER_SIG + bad, [peter()])
    # A signature with a known name but another key ID is an unknown key: ignored.
    other_id = PETER_SIG.replace("x08g", "xxxx")
    note = open_note(TEXT + "\n" + other_id + PETER_SIG, [peter()])
    assert len(note.unverified) == 1


def test_ambiguous_verifiers() -> None:
    fake = NoteVerifier.__new__(NoteVerifier)
    object.__setattr__(fake, "name", "PeterNeumann")
    object.__setattr__(fake, "key_id", 0xC74F20A3)
    object.__setattr__(fake, "public_key", bytes(32))
    with pytest.raises(NoteError) as info:
        open_note(TEXT + "\n" + PETER_SIG, [peter(), fake])
    assert info.value.reason == "ambiguous_key"
    open_note(TEXT + "\n" + PETER_SIG, [peter(), peter()])  # the same key twice is fine


@pytest.mark.parametrize(
    "msg",
    [
        TEXT,  # Go's badMsgs
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        # and more
        TEXT + "\n" + PETER_SIG.replace("—", "-"),
        TEXT + "\n" + PETER_SIG.replace("— ", "—"),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # unpadded base64
        TEXT + "\n" + PETER_SIG.replace("nAM=", "nAN="),  # non-canonical base64
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann ", "PeterNeumann  "),
        TEXT + "\n" + "— PeterNeumann AAAA\n",  # shorter than a key ID + 1 byte
        TEXT + "\n" + PETER_SIG + "\n",
        TEXT.replace("\n", "\r\n") + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("\n", "\x00\n"),
    ],
)
def test_malformed_notes(msg: str) -> None:
    with pytest.raises(NoteError):
        open_note(msg, [peter()])


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(NoteError):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [peter()])


def test_text_may_contain_blank_lines() -> None:
    signer = NoteSigner.generate("k")
    text = "a\n\nb\n"
    note = open_note(sign_note(text, [signer]), [signer.verifier()])
    assert note.text == text


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_parse_never_crashes(data: str | bytes) -> None:
    try:
        parse_note(data)
        open_note(data, [peter()])
    except NoteError:
        pass


@settings(max_examples=30, deadline=None)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_byte_flip_breaks_a_note(position: int, bit: int) -> None:
    raw = bytearray((TEXT + "\n" + PETER_SIG).encode())
    raw[position % len(raw)] ^= 1 << bit
    try:
        note = open_note(bytes(raw), [peter()])
    except NoteError:
        return
    # Only a flip that leaves the signed text and signature intact could verify.
    assert note.text == TEXT


# --- Checkpoints ---------------------------------------------------------------------


ROOT_B64 = "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0="


def test_checkpoint_text_matches_go_tree_note() -> None:
    # golang.org/x/mod/sumdb/tlog note_test.go TestFormatTree: the same three lines.
    cp = Checkpoint("go.sum database tree", 123456789012, base64.b64decode(ROOT_B64))
    assert cp.text() == f"go.sum database tree\n123456789012\n{ROOT_B64}\n"
    assert Checkpoint.from_text(cp.text()) == cp


def test_checkpoint_sign_and_open() -> None:
    signer = NoteSigner.generate("letro.example/log")
    cp = Checkpoint("letro.example/log", 8, bytes(range(32)), ("ext one", "ext two"))
    signed = sign_checkpoint(cp, [signer])
    parsed, note = open_checkpoint(signed, [signer.verifier()], origin="letro.example/log")
    assert parsed == cp and note.verified
    with pytest.raises(NoteError) as info:
        open_checkpoint(signed, [signer.verifier()], origin="other.example/log")
    assert info.value.reason == "wrong_origin"


@pytest.mark.parametrize(
    "text",
    [
        f"origin\n12\n{ROOT_B64}",  # no final newline
        f"origin\n12\n",
        f"\n12\n{ROOT_B64}\n",  # empty origin
        f"origin\n012\n{ROOT_B64}\n",  # leading zero
        f"origin\n+12\n{ROOT_B64}\n",
        f"origin\n 12\n{ROOT_B64}\n",
        f"origin\n0x0c\n{ROOT_B64}\n",
        f"origin\n١٢\n{ROOT_B64}\n",  # non-ASCII digits
        f"origin\n9223372036854775808\n{ROOT_B64}\n",  # 2^63
        f"origin\n12\n{ROOT_B64[:-2]}\n",
        f"origin\n12\n{ROOT_B64[:-1]}\n",  # unpadded
        f"origin\n12\n{base64.b64encode(bytes(31)).decode()}\n",
        f"origin\n12\n{base64.b64encode(bytes(33)).decode()}\n",
        f"origin\n12\n{ROOT_B64}\n\n",  # empty extension line
        f"origin\n12\n{ROOT_B64}\next\n\n",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.from_text(text)


def test_checkpoint_size_bounds() -> None:
    assert Checkpoint.from_text(f"o\n0\n{ROOT_B64}\n").size == 0
    assert Checkpoint.from_text(f"o\n9223372036854775807\n{ROOT_B64}\n").size == 2**63 - 1


# --- JavaScript (@noble/curves) ------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["notes"], ids=lambda v: v["name"])
def test_recorded_js_checkpoints(vector: dict[str, Any]) -> None:
    signer = NoteSigner(vector["name"], bytes.fromhex(vector["seed"]))
    assert signer.verifier().vkey() == vector["vkey"]
    assert sign_note(vector["text"], [signer]) == vector["note"]
    cp, _ = open_checkpoint(vector["note"], [NoteVerifier.from_vkey(vector["vkey"])], origin=vector["name"])
    assert cp.text() == vector["text"]


@needs_node
def test_live_js_verifies_python_notes() -> None:
    signer = NoteSigner.generate("live.example/log")
    public = base64.b64encode(signer.verifier().public_key).decode()
    cases = []
    for i, text in enumerate(["a\n", "héllo wörld\nline two\n", Checkpoint("live.example/log", 5, bytes(32)).text()]):
        note = parse_note(sign_note(text, [signer]))
        sig = base64.b64encode(note.signatures[0].signature).decode()
        cases.append({"publicKey": public, "text": text, "signature": sig})
        cases.append({"publicKey": public, "text": text + "x\n", "signature": sig})  # tampered text
    result = run_js("evidence_live.mjs", {"notes": cases})
    assert result["notes"] == [True, False] * 3
