"""zk.hashing against @semaphore-protocol/proof 4.14.3 (recorded vectors and live)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk.field import R
from zk.hashing import MAX_TEXT_BYTES, MessageError, hash_message, semaphore_hash, to_bigint

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "hashing.json").read_text("utf-8"))
TWO_256 = 1 << 256



def py_input(spec: dict[str, str]) -> Any:
    """The Python value standing for a JS input of the vectors."""
    kind, value = spec["type"], spec["value"]
    if kind == "string":
        return value
    if kind == "bigint":
        return int(value)
    if kind == "bytes":
        return bytes.fromhex(value)
    assert kind == "number"
    number = float(value)
    # Python has one int type: integral JS numbers map to int, the rest stay floats.
    return int(number) if math.isfinite(number) and number.is_integer() else number


def js_spec(value: int | str | bytes) -> dict[str, str]:
    if isinstance(value, str):
        return {"type": "string", "value": value}
    if isinstance(value, bytes):
        return {"type": "bytes", "value": value.hex()}
    return {"type": "bigint", "value": str(value)}


def check_against_js(value: Any, expected: dict[str, Any]) -> None:
    """Assert Python's conversion and hash match one JS evaluation."""
    if "to_bigint_error" in expected:
        with pytest.raises(MessageError):
            to_bigint(value)
        with pytest.raises(MessageError):
            hash_message(value)
        return
    converted = to_bigint(value)
    assert converted == int(expected["bigint"]), (value, expected)
    if "hash" in expected:
        assert semaphore_hash(converted) == int(expected["hash"])
        assert hash_message(value) == int(expected["hash"])
    else:
        assert "hash_error" in expected
        with pytest.raises(MessageError):
            semaphore_hash(converted)
        with pytest.raises(MessageError):
            hash_message(value)


def test_vectors_meta() -> None:
    assert VECTORS["versions"]["@semaphore-protocol/proof"] == "4.14.3"
    assert len(VECTORS["cases"]) > 150
    kinds = {
        "to_bigint_error" if "to_bigint_error" in c else ("hash_error" if "hash_error" in c else "ok")
        for c in VECTORS["cases"]
    }
    assert kinds == {"ok", "to_bigint_error", "hash_error"}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['input']['type']}:{c['input']['value']!r}"[:60])
def test_vector(case: dict[str, Any]) -> None:
    spec = case["input"]
    value = py_input(spec)
    if spec["type"] == "number" and "to_bigint_error" in case and isinstance(value, int):
        # JS rejects unsafe numbers (|n| > 2**53 - 1); Python ints are bigints, and a JS
        # bigint of the same value is accepted, so Python follows the bigint rule.
        assert to_bigint(value) == value
        return
    check_against_js(value, case)


def test_vectors_from_real_proofs() -> None:
    """Values whose hashes were checked by the generator against generateProof + Groth16."""
    for check in VECTORS["proof_checks"]:
        message, scope = py_input(check["message"]), py_input(check["scope"])
        assert str(to_bigint(message)) == check["proof_message"]
        assert str(to_bigint(scope)) == check["proof_scope"]
        assert hash_message(message) == int(check["message_hash"])
        assert hash_message(scope) == int(check["scope_hash"])


def test_known_values() -> None:
    # keccak256(32 zero bytes) = 0x290decd9...e563; >> 8 drops the last byte.
    assert semaphore_hash(0) == 0x290DECD9548B62A8D60345A988386FC84BA6BC95484008F6362F93160EF3E5
    assert to_bigint("hello") == int.from_bytes(b"hello".ljust(32, b"\0"), "big")
    assert to_bigint("0x1f") == 31 and to_bigint(" 42 ") == 42 and to_bigint("-") == 0


@pytest.mark.parametrize("bad", [1.0, 1.5, None, True, False, [1], {"a": 1}, object()])
def test_rejects_other_types(bad: Any) -> None:
    with pytest.raises(MessageError):
        to_bigint(bad)
    with pytest.raises(MessageError):
        hash_message(bad)


@pytest.mark.parametrize("bad", ["1", 1.0, True, b"\x01"])
def test_semaphore_hash_takes_only_ints(bad: Any) -> None:
    with pytest.raises(MessageError):
        semaphore_hash(bad)


def test_range_errors() -> None:
    with pytest.raises(MessageError, match="negative"):
        semaphore_hash(-1)
    with pytest.raises(MessageError, match="32 bytes"):
        semaphore_hash(TWO_256)
    assert semaphore_hash(TWO_256 - 1) < 1 << 248
    with pytest.raises(MessageError, match="31"):
        to_bigint("x" * 32)
    with pytest.raises(MessageError, match="surrogate"):
        to_bigint("\ud800x")
    # Absurdly long decimal strings are refused without tripping Python's int() limit.
    with pytest.raises(MessageError):
        to_bigint("9" * 5000)
    assert to_bigint("0" * 5000 + "12") == 12
    assert to_bigint("0x" + "f" * 5000) == (1 << 20000) - 1


def test_not_reduced_modulo_r() -> None:
    assert to_bigint(str(R)) == R
    assert to_bigint(R + 1) == R + 1
    assert hash_message(R) != hash_message(0)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=TWO_256 - 1))
def test_integer_spellings_agree(n: int) -> None:
    expected = semaphore_hash(n)
    assert expected < 1 << 248 and expected < R
    for spelling in (n, str(n), hex(n), f"  {n}\n", n.to_bytes(32, "big"), n.to_bytes(40, "big")):
        assert hash_message(spelling) == expected


# No digits, signs or JS whitespace: such text can only take the UTF-8 path.
_TEXT_ONLY = st.characters(
    codec="utf-8", exclude_characters=set("0123456789+-\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff")
    | {chr(c) for c in range(0x2000, 0x200B)},
)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=_TEXT_ONLY, max_size=40))
def test_text_is_utf8_right_padded(text: str) -> None:
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_TEXT_BYTES:
        with pytest.raises(MessageError):
            to_bigint(text)
    else:
        assert to_bigint(text) == int.from_bytes(encoded.ljust(32, b"\0"), "big")


def random_inputs(seed: int, count: int) -> list[int | str | bytes]:
    """Inputs biased towards the corners of the conversion rules."""
    rng = random.Random(seed)
    spaces = ["", " ", "\t", "\n", "\u00a0", "\u3000", "\ufeff", "\u2028", "\u0085", "\u200b", "\u001c"]
    pieces = ["-", "+", "0", "x", "X", "b", "o", "1", "7", "9", "f", "A", "g", "_", ".", "e", " ", "é", "😀", "\udc00"]
    out: list[int | str | bytes] = []
    for i in range(count):
        kind = i % 6
        if kind == 0:
            out.append(rng.choice(spaces) + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) + rng.choice(spaces))
        elif kind == 1:
            n = rng.getrandbits(rng.choice([8, 64, 253, 256, 257]))
            sign = rng.choice(["", "-", "+", "- ", "--"])
            body = rng.choice([str(n), hex(n), hex(n).upper().replace("0X", "0x"), bin(n), oct(n)])
            out.append(rng.choice(spaces) + sign + body + rng.choice(spaces))
        elif kind == 2:
            length = rng.choice([0, 1, 5, 30, 31, 32, 33])
            alphabet = "abcXYZ019 -é日😀\u0000"
            out.append("".join(rng.choice(alphabet) for _ in range(length)))
        elif kind == 3:
            out.append(rng.choice([-1, 1]) * rng.getrandbits(rng.choice([1, 60, 255, 256, 257])))
        elif kind == 4:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 31, 32, 33]))))
        else:
            out.append("".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 12))))
    return out


@needs_node
def test_live_against_js() -> None:
    inputs = random_inputs(seed=20240611, count=600)
    results = run_js("hashing_eval.mjs", {"inputs": [js_spec(v) for v in inputs]})
    assert len(results) == len(inputs)
    outcomes = set()
    for value, expected in zip(inputs, results):
        check_against_js(value, expected)
        outcomes.add(next(k for k in ("to_bigint_error", "hash_error", "hash") if k in expected))
    assert outcomes == {"to_bigint_error", "hash_error", "hash"}
