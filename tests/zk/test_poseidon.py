"""Poseidon (circomlib instance): interop vectors from poseidon-lite, fast == reference,
strict input checks, and a live cross-check against poseidon-lite in Node."""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk import poseidon as fast
from zk.field import R, FieldError
from zk.poseidon import poseidon, poseidon2, poseidon2_python
from zk.poseidon_reference import PARTIAL_ROUNDS, params, poseidon_reference

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "poseidon.json"
field = st.integers(min_value=0, max_value=R - 1)


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]
    return cases


def test_vectors_cover_every_arity_and_edges() -> None:
    cases = _cases()
    assert {len(c["inputs"]) for c in cases} == set(range(1, 17))
    flat = {int(x) for c in cases for x in c["inputs"]}
    assert 0 in flat and R - 1 in flat


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"n{len(c['inputs'])}")
def test_poseidon_lite_vectors(case: dict[str, Any]) -> None:
    inputs = [int(x) for x in case["inputs"]]
    expected = int(case["hash"])
    assert poseidon(inputs) == expected
    assert poseidon_reference(inputs) == expected
    if len(inputs) == 2:
        assert poseidon2(*inputs) == expected
        assert poseidon2_python(*inputs) == expected


def test_known_value() -> None:
    # poseidon2([1, 2]) as printed by circomlibjs / poseidon-lite.
    assert poseidon2(1, 2) == 7853200120776062878684798364095072458815029376092732009249414926327459813530


def test_constants_shape() -> None:
    for n in range(1, 17):
        p = params(n)
        assert p.t == n + 1
        assert p.partial_rounds == PARTIAL_ROUNDS[n - 1]
        assert len(p.round_constants) == (8 + p.partial_rounds) * p.t
        assert len(p.mds) == p.t


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=16).flatmap(lambda n: st.lists(field, min_size=n, max_size=n)))
def test_fast_equals_reference(inputs: list[int]) -> None:
    assert poseidon(inputs) == poseidon_reference(inputs)


@settings(max_examples=40, deadline=None)
@given(field, field)
def test_poseidon2_paths_agree(a: int, b: int) -> None:
    expected = poseidon_reference([a, b])
    assert poseidon2(a, b) == expected
    assert poseidon2_python(a, b) == expected
    assert poseidon([a, b]) == expected


def test_native_backend_is_checked() -> None:
    # Whatever backend is active, it agrees with the pure path (it was probed at import).
    assert fast.BACKEND in {"light-poseidon-python", "python"}
    rng = random.Random(7)
    for _ in range(20):
        a, b = rng.randrange(R), rng.randrange(R)
        assert fast._POSEIDON2(a, b) == fast._poseidon2_python(a, b)


@pytest.mark.parametrize("bad", [[], list(range(17)), list(range(40))])
def test_bad_arity_rejected(bad: list[int]) -> None:
    with pytest.raises(FieldError):
        poseidon(bad)
    with pytest.raises(FieldError):
        poseidon_reference(bad)


@pytest.mark.parametrize("value", [R, R + 1, 2**256, -1, -R])
def test_out_of_range_rejected_not_reduced(value: int) -> None:
    for n in (1, 2, 5, 16):
        inputs = [1] * n
        inputs[-1] = value
        with pytest.raises(FieldError):
            poseidon(inputs)
        with pytest.raises(FieldError):
            poseidon_reference(inputs)
    with pytest.raises(FieldError):
        poseidon2(value, 1)
    with pytest.raises(FieldError):
        poseidon2(1, value)
    with pytest.raises(FieldError):
        poseidon2_python(value, 1)


@pytest.mark.parametrize("value", [True, 1.0, "1", b"\x01", None])
def test_non_integers_rejected(value: Any) -> None:
    with pytest.raises(FieldError):
        poseidon([value])
    with pytest.raises(FieldError):
        poseidon2(value, 1)
    with pytest.raises(FieldError):
        poseidon2(1, value)


def test_non_sequence_rejected() -> None:
    with pytest.raises(FieldError):
        poseidon("12")  # type: ignore[arg-type]
    with pytest.raises(FieldError):
        poseidon(iter([1, 2]))  # type: ignore[arg-type]


def test_field_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        poseidon2(R, 0)


@needs_node
def test_live_cross_check_with_poseidon_lite() -> None:
    rng = random.Random(2024)
    inputs = [[rng.randrange(R) for _ in range(n)] for n in range(1, 17)]
    inputs += [[rng.randrange(R), rng.randrange(R)] for _ in range(10)]
    inputs += [[R - 1, 0], [0, R - 1]]
    out = run_js("poseidon_hash.mjs", {"inputs": [[str(x) for x in xs] for xs in inputs]})
    assert [int(h) for h in out["hashes"]] == [poseidon(xs) for xs in inputs]


class _FakeHasher:
    def __init__(self, n: int, wrong: bool) -> None:
        self.wrong = wrong

    def hash(self, xs: list[int]) -> str:
        value = fast._poseidon2_python(*xs)
        return str(value ^ 1 if self.wrong else value)


@pytest.mark.parametrize("wrong", [False, True])
def test_native_backend_probe(monkeypatch: pytest.MonkeyPatch, wrong: bool) -> None:
    """A native module is used only if it reproduces the pure path on the probes."""

    class Module:
        @staticmethod
        def Hasher(n: int) -> _FakeHasher:  # noqa: N802 - mirrors the extension's API
            return _FakeHasher(n, wrong)

    monkeypatch.setattr(importlib, "import_module", lambda name: Module)
    native = fast._load_native()
    assert (native is None) == wrong


def test_native_backend_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", missing)
    assert fast._load_native() is None


@pytest.mark.parametrize("n_inputs", [1, 2, 5])
def test_constants_reproduced_by_grain_generator(n_inputs: int) -> None:
    """The shipped constants are what scripts/gen_poseidon_constants.py derives (Grain LFSR)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "gen_poseidon_constants.py"
    spec = importlib.util.spec_from_file_location("gen_poseidon_constants", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    constants, mds = module.generate(n_inputs + 1)
    p = params(n_inputs)
    assert tuple(constants) == p.round_constants
    assert tuple(tuple(row) for row in mds) == p.mds
