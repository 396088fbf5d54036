"""Shared data for the proof tests: JS-made vectors and small curve helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from py_ecc.fields import bn128_FQ2 as FQ2

from zk.field import Q
from zk.groth16.encoding import Proof

VECTORS_PATH = Path(__file__).resolve().parents[2] / "vectors" / "proofs.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text("utf-8"))["vectors"]


# b / (9 + u), the G2 twist coefficient (EIP-197).
_B2 = FQ2([
    19485874751759354771024239261021720505790618469301721065564631296452457478373,
    266929791119991161246907387137283842545076965332900288569378510910307636690,
])


def vector(depth: int) -> dict[str, Any]:
    """The first JS vector at a circuit depth."""
    return next(v for v in VECTORS if v["proof"]["merkleTreeDepth"] == depth)


def circuit_inputs(vec: dict[str, Any]) -> dict[str, Any]:
    """The vector's circuit inputs as Python ints."""
    return {k: [int(x) for x in v] if isinstance(v, list) else int(v) for k, v in vec["circuitInputs"].items()}


def public_signals(vec: dict[str, Any]) -> list[int]:
    return [int(x) for x in vec["publicSignals"]]


def _sqrt_fq2(a: FQ2) -> FQ2 | None:
    # Square root in Fq2 for q = 3 mod 4 (Adj and Rodriguez-Henriquez, "Square root
    # computation over even extension fields", algorithm 9).
    a1 = a ** ((Q - 3) // 4)
    alpha = a1 * a1 * a
    if (alpha ** Q) * alpha == FQ2([-1, 0]):
        return None
    x0 = a1 * a
    if alpha == FQ2([-1, 0]):
        return FQ2([0, 1]) * x0
    return ((FQ2([1, 0]) + alpha) ** ((Q - 1) // 2)) * x0


def twist_point_off_subgroup(start: int = 5) -> tuple[tuple[int, int], tuple[int, int]]:
    """A point on the G2 twist curve that (overwhelmingly likely) is not in the r-subgroup."""
    x0 = start
    while True:
        x = FQ2([x0, 1])
        rhs = x ** 3 + _B2
        y = _sqrt_fq2(rhs)
        if y is not None and y * y == rhs:
            return ((x.coeffs[0].n, x.coeffs[1].n), (y.coeffs[0].n, y.coeffs[1].n))
        x0 += 1


def with_b_off_subgroup(proof: Proof) -> Proof:
    """``proof`` with B replaced by a twist point outside the r-subgroup, built without the
    validation that would refuse it (as a caller holding such an object could pass it)."""
    rogue = object.__new__(Proof)
    object.__setattr__(rogue, "a", proof.a)
    object.__setattr__(rogue, "b", twist_point_off_subgroup())
    object.__setattr__(rogue, "c", proof.c)
    return rogue
