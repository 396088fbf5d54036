"""Baby Jubjub (EIP-2494): group law, scalar multiplication, subgroup checks and the
@zk-kit/baby-jubjub point packing, with strict unpacking."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk import babyjubjub as bj
from zk.field import R

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "eddsa.json"
scalars = st.integers(min_value=0, max_value=bj.SUBORDER - 1)
# The point of order 2, and one of order 4 (x^2 = 1/a, y = 0).
ORDER2 = (0, R - 1)


def _order4() -> bj.Point:
    x = bj._sqrt(pow(bj.A, -1, R))
    assert x is not None
    return (x, 0)


def test_constants() -> None:
    assert bj.ORDER == 8 * bj.SUBORDER
    assert bj.SUBORDER == 2736030358979909402780800718157159386076813972158567259200215660948447373041
    assert bj.in_curve(bj.GENERATOR) and bj.in_curve(bj.BASE8)
    assert bj.mul(bj.GENERATOR, 8) == bj.BASE8
    assert bj.mul(bj.BASE8, bj.SUBORDER) == bj.IDENTITY
    assert bj.mul(bj.GENERATOR, bj.ORDER) == bj.IDENTITY
    assert bj.mul(bj.GENERATOR, bj.SUBORDER) != bj.IDENTITY


def test_subgroup() -> None:
    assert bj.in_subgroup(bj.BASE8)
    assert bj.in_subgroup(bj.IDENTITY)
    assert not bj.in_subgroup(bj.GENERATOR)
    assert bj.in_curve(ORDER2) and not bj.in_subgroup(ORDER2)
    o4 = _order4()
    assert bj.in_curve(o4) and bj.mul(o4, 4) == bj.IDENTITY and bj.mul(o4, 2) == ORDER2
    p = bj.mul_base8(12345)
    assert not bj.in_subgroup(bj.add(p, ORDER2))


def test_small_cases() -> None:
    p = bj.mul_base8(7)
    assert bj.add(p, bj.IDENTITY) == p
    assert bj.add(p, bj.neg(p)) == bj.IDENTITY
    assert bj.mul(p, 0) == bj.IDENTITY
    assert bj.mul(p, 1) == p
    assert bj.mul(p, 2) == bj.add(p, p)
    assert bj.mul_base8(0) == bj.IDENTITY
    assert bj.mul_base8(bj.SUBORDER) == bj.IDENTITY
    assert bj.mul_base8(bj.SUBORDER + 1) == bj.BASE8
    # Adding the 2-torsion point negates both coordinates.
    assert bj.add(p, ORDER2) == ((-p[0]) % R, (-p[1]) % R)


@settings(max_examples=15, deadline=None)
@given(scalars, scalars)
def test_group_law(a: int, b: int) -> None:
    pa, pb = bj.mul_base8(a), bj.mul_base8(b)
    assert bj.mul(bj.BASE8, a) == pa
    assert bj.add(pa, pb) == bj.add(pb, pa) == bj.mul_base8((a + b) % bj.SUBORDER)
    assert bj.mul(pa, b) == bj.mul(pb, a)
    assert bj.in_curve(pa) and bj.in_subgroup(pa)


def test_in_curve_rejects() -> None:
    x, y = bj.BASE8
    assert not bj.in_curve((x + R, y))  # non-canonical coordinate
    assert not bj.in_curve((x, y + R))
    assert not bj.in_curve((x, y + 1))  # off the curve
    assert not bj.in_curve((-1, 1))
    assert not bj.in_curve([x, y])
    assert not bj.in_curve((x, y, 1))
    assert not bj.in_curve((True, 1))
    assert not bj.in_curve(("1", 1))
    assert not bj.in_curve(None)


def test_operations_reject_bad_points_and_scalars() -> None:
    with pytest.raises(bj.CurveError):
        bj.add((1, 1), bj.BASE8)
    with pytest.raises(bj.CurveError):
        bj.mul((1, 1), 3)
    with pytest.raises(bj.CurveError):
        bj.mul(bj.BASE8, -1)
    with pytest.raises(bj.CurveError):
        bj.mul_base8(-5)
    with pytest.raises(bj.CurveError):
        bj.pack_point((1, 2))
    assert issubclass(bj.CurveError, ValueError)


@settings(max_examples=20, deadline=None)
@given(scalars, st.booleans())
def test_pack_roundtrip(k: int, full_group: bool) -> None:
    p = bj.mul(bj.GENERATOR, k) if full_group else bj.mul_base8(k)
    packed = bj.pack_point(p)
    assert 0 <= packed < 2**256
    assert packed & ((1 << 255) - 1) == p[1]
    assert bool(packed >> 255) == (p[0] > (R - 1) // 2)
    assert bj.unpack_point(packed) == p


def test_pack_x_zero_points() -> None:
    assert bj.pack_point(bj.IDENTITY) == 1
    assert bj.unpack_point(1) == bj.IDENTITY
    assert bj.unpack_point(R - 1) == ORDER2
    with pytest.raises(bj.CurveError, match="sign bit"):
        bj.unpack_point(1 | (1 << 255))


def test_unpack_strict() -> None:
    # y = r passes zk-kit's `y > r` check; the canonical encoding is y < r.
    for bad in (R, R + 1, (1 << 255) - 1, 1 << 254, -1, 1 << 256, True):
        with pytest.raises(bj.CurveError):
            bj.unpack_point(bad)
    with pytest.raises(bj.CurveError):
        bj.unpack_point("1")  # type: ignore[arg-type]
    # Some y < r have no x on the curve.
    rng = random.Random(3)
    misses = 0
    for _ in range(40):
        y = rng.randrange(R)
        try:
            p = bj.unpack_point(y)
        except bj.CurveError:
            misses += 1
        else:
            assert bj.in_curve(p) and p[1] == y
    assert 0 < misses < 40


def _eddsa_keys() -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = json.loads(VECTORS.read_text())["keys"]
    return keys


def test_js_packed_points() -> None:
    for entry in _eddsa_keys():
        point = (int(entry["publicKey"][0]), int(entry["publicKey"][1]))
        packed = int(entry["packedPublicKey"])
        assert bj.pack_point(point) == packed
        assert bj.unpack_point(packed) == point
        for sig in entry["signatures"]:
            r8 = (int(sig["R8"][0]), int(sig["R8"][1]))
            assert bj.pack_point(r8) == int.from_bytes(bytes.fromhex(sig["packed"])[:32], "little")


@needs_node
def test_live_unpack_agrees_with_zk_kit() -> None:
    rng = random.Random(11)
    values = [rng.randrange(R) | (rng.getrandbits(1) << 255) for _ in range(30)]
    values += [bj.pack_point(bj.mul(bj.GENERATOR, rng.randrange(bj.ORDER))) for _ in range(10)]
    out = run_js("eddsa_live.mjs", {"op": "unpackPublicKey", "items": [str(v) for v in values]})
    agreed = 0
    for value, js in zip(values, out["results"]):
        try:
            ours: bj.Point | None = bj.unpack_point(value)
        except bj.CurveError:
            ours = None
        theirs = None if isinstance(js, dict) else (int(js[0]), int(js[1]))
        assert ours == theirs, value
        agreed += theirs is not None
    assert agreed >= 10
