"""zk.groth16.encoding: the packed, snarkjs and groth16py encodings of a Groth16 proof."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.zk.groth16.helpers import VECTORS, twist_point_off_subgroup, vector
from zk.field import Q, R
from zk.groth16.encoding import (
    Proof,
    ProofEncodingError,
    g2_in_subgroup,
    parse_public_signals,
    public_signals_valid,
)

VEC = vector(2)
POINTS = [int(p) for p in VEC["proof"]["points"]]


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_packing_matches_zk_kit_unpack(vec: dict[str, Any]) -> None:
    # snarkjsProof is @zk-kit/utils unpackGroth16Proof(points), computed by JS.
    packed = Proof.from_decimal_points(vec["proof"]["points"])
    unpacked = Proof.from_snarkjs(vec["snarkjsProof"])
    assert packed == unpacked
    assert packed.to_decimal_points() == vec["proof"]["points"]


def test_layout_of_each_encoding() -> None:
    proof = Proof.from_points(POINTS)
    a0, a1, b01, b00, b11, b10, c0, c1 = POINTS
    assert proof.a == (a0, a1) and proof.c == (c0, c1)
    assert proof.b == ((b00, b01), (b10, b11))  # real part first inside the object
    assert proof.to_snarkjs() == {
        "pi_a": [str(a0), str(a1), "1"],
        "pi_b": [[str(b00), str(b01)], [str(b10), str(b11)], ["1", "0"]],
        "pi_c": [str(c0), str(c1), "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }
    blob = proof.to_bytes()
    assert blob == b"".join(p.to_bytes(32, "big") for p in POINTS)
    assert Proof.from_bytes(blob) == proof
    assert Proof.from_snarkjs(proof.to_snarkjs()) == proof


@pytest.mark.parametrize(
    "points",
    [
        POINTS[:7],
        POINTS + [1],
        [],
        [str(p) for p in POINTS],
        [True] + POINTS[1:],
        [-1] + POINTS[1:],
        [POINTS[0] + Q] + POINTS[1:],  # non-canonical coordinate, same point mod q
        [POINTS[0], POINTS[1] + 1] + POINTS[2:],  # A off the curve
        [0, 0] + POINTS[2:],  # A at infinity (EVM encoding)
        POINTS[:2] + [POINTS[3], POINTS[2], POINTS[5], POINTS[4]] + POINTS[6:],  # B in snarkjs order
        POINTS[:2] + [0, 0, 0, 0] + POINTS[6:],  # B at infinity
        POINTS[:6] + [POINTS[6], 1],  # C off the curve
    ],
)
def test_bad_packed_proofs(points: list[Any]) -> None:
    with pytest.raises(ProofEncodingError):
        Proof.from_points(points)


def test_tuple_and_list_accepted_but_not_other_iterables() -> None:
    assert Proof.from_points(tuple(POINTS)) == Proof.from_points(POINTS)
    with pytest.raises(ProofEncodingError):
        Proof.from_points(iter(POINTS))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [" 42", "042", "+42", "0x2a", "", "4e1", "٤٢", str(Q), "-1", 42])
def test_decimals_must_be_canonical(bad: Any) -> None:
    points = list(VEC["proof"]["points"])
    points[6] = bad
    with pytest.raises(ProofEncodingError):
        Proof.from_decimal_points(points)


def test_g2_subgroup_is_enforced() -> None:
    off = twist_point_off_subgroup()
    points = POINTS[:2] + [off[0][1], off[0][0], off[1][1], off[1][0]] + POINTS[6:]
    with pytest.raises(ProofEncodingError, match="subgroup"):
        Proof.from_points(points)
    unchecked = Proof.from_points(points, check_subgroup=False)  # on the curve, so it parses
    with pytest.raises(ProofEncodingError, match="subgroup"):
        unchecked.check_subgroup()
    assert not g2_in_subgroup(off)
    assert g2_in_subgroup(Proof.from_points(POINTS).b)


def snarkjs_variant(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VEC["snarkjsProof"])
    data["pi_a"] = data["pi_a"] + ["1"]
    data["pi_b"] = data["pi_b"] + [["1", "0"]]
    data["pi_c"] = data["pi_c"] + ["1"]
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def test_snarkjs_projective_form_accepted() -> None:
    assert Proof.from_snarkjs(snarkjs_variant(("protocol",), "groth16")) == Proof.from_points(POINTS)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("pi_a", 2), "2"),
        (("pi_a", 2), 1),
        (("pi_c", 2), "0"),
        (("pi_b", 2), ["0", "0"]),
        (("pi_b", 0), ["1"]),
        (("pi_b", 0, 0), "0" + VEC["snarkjsProof"]["pi_b"][0][0]),
        (("pi_a", 0), " " + VEC["snarkjsProof"]["pi_a"][0]),
        (("protocol",), "plonk"),
        (("curve",), "bls12381"),
        (("extra",), 1),
        (("pi_a",), "1,2"),
    ],
)
def test_bad_snarkjs_proofs(path: tuple[Any, ...], value: Any) -> None:
    with pytest.raises(ProofEncodingError):
        Proof.from_snarkjs(snarkjs_variant(path, value))


def test_missing_snarkjs_field() -> None:
    data = copy.deepcopy(VEC["snarkjsProof"])
    del data["pi_c"]
    with pytest.raises(ProofEncodingError):
        Proof.from_snarkjs(data)
    with pytest.raises(ProofEncodingError):
        Proof.from_snarkjs([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize("blob", [b"", b"\0" * 255, b"\0" * 257, "00" * 256, b"\0" * 256])
def test_bad_blobs(blob: Any) -> None:
    with pytest.raises(ProofEncodingError):
        Proof.from_bytes(blob)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=256, max_size=256))
def test_random_blobs_roundtrip_or_raise(blob: bytes) -> None:
    try:
        proof = Proof.from_bytes(blob)
    except ProofEncodingError:
        return
    assert proof.to_bytes() == blob


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=7), st.integers(min_value=1, max_value=Q - 1))
def test_changing_one_coordinate_leaves_the_curve(index: int, delta: int) -> None:
    points = list(POINTS)
    points[index] = (points[index] + delta) % Q
    # Another valid point with the same other coordinates exists only for y -> -y.
    if index in (1, 7) and points[index] == Q - POINTS[index]:
        return
    with pytest.raises(ProofEncodingError):
        Proof.from_points(points, check_subgroup=False)


def test_public_signals() -> None:
    assert parse_public_signals(VEC["publicSignals"]) == tuple(int(s) for s in VEC["publicSignals"])
    assert parse_public_signals(["0", str(R - 1)]) == (0, R - 1)
    for bad in ([str(R)], ["01"], [" 1"], [1], "123"):
        with pytest.raises(ProofEncodingError):
            parse_public_signals(bad)  # type: ignore[arg-type]
    assert public_signals_valid([0, R - 1], 2)
    assert not public_signals_valid([0, R], 2)
    assert not public_signals_valid([0, -1], 2)
    assert not public_signals_valid([True, 1], 2)
    assert not public_signals_valid([1, 2], 3)
