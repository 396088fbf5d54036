"""Reference Groth16 verifier: pure Python on py_ecc's BN254 (alt_bn128) pairing.

Slow (about 0.6 s: four Miller loops and one final exponentiation) but small enough to
read against the specification, so tests hold the fast backend to it.

Verification (Groth, "On the Size of Pairing-based Non-interactive Arguments",
EUROCRYPT 2016, ePrint 2016/260, section 3.2), with the snarkjs key layout
(``vk_alpha_1``, ``vk_beta_2``, ``vk_gamma_2``, ``vk_delta_2``, ``IC``)::

    vk_x = IC[0] + sum(pub[i] * IC[i + 1])
    e(A, B) == e(alpha, beta) * e(vk_x, gamma) * e(C, delta)

checked, as the EIP-197 precompile does, as a product of pairings equal to one:
``e(-A, B) * e(alpha, beta) * e(vk_x, gamma) * e(C, delta) == 1``. Public inputs must be
below r; B (and the key's G2 points) must lie in the order-r subgroup, which py_ecc's
pairing does not check by itself.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from py_ecc.fields import optimized_bn128_FQ as FQ
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.fields import optimized_bn128_FQ12 as FQ12
from py_ecc.optimized_bn128.optimized_curve import add, multiply, neg
from py_ecc.optimized_bn128.optimized_pairing import final_exponentiate, pairing

from zk.artifacts import check_depth, load_artifacts
from zk.groth16.backend import ProcessDefault
from zk.groth16.encoding import (
    G1Point,
    G2Point,
    Proof,
    ProofEncodingError,
    g1_from_json,
    g2_from_json,
    g2_in_subgroup,
    public_signals_valid,
)


@dataclass(frozen=True)
class VerificationKey:
    """A Groth16 verification key (affine coordinates, validated)."""

    alpha: G1Point
    beta: G2Point
    gamma: G2Point
    delta: G2Point
    ic: tuple[G1Point, ...]

    @classmethod
    def from_snarkjs(cls, data: dict[str, Any]) -> VerificationKey:
        """Parse a snarkjs ``verification_key.json`` object (Groth16, bn128)."""
        if not isinstance(data, dict) or data.get("protocol") != "groth16" or data.get("curve") != "bn128":
            raise ProofEncodingError("not a Groth16 bn128 verification key")
        ic = data.get("IC")
        n_public = data.get("nPublic")
        if not isinstance(ic, list) or not isinstance(n_public, int) or len(ic) != n_public + 1:
            raise ProofEncodingError("verification key IC does not match nPublic")
        g2 = {name: g2_from_json(data.get(name), name) for name in ("vk_beta_2", "vk_gamma_2", "vk_delta_2")}
        for name, point in g2.items():
            if not g2_in_subgroup(point):
                raise ProofEncodingError(f"{name} is not in the G2 subgroup")
        return cls(
            alpha=g1_from_json(data.get("vk_alpha_1"), "vk_alpha_1"),
            beta=g2["vk_beta_2"],
            gamma=g2["vk_gamma_2"],
            delta=g2["vk_delta_2"],
            ic=tuple(g1_from_json(p, f"IC[{i}]") for i, p in enumerate(ic)),
        )


def _g1(point: G1Point) -> Any:
    return (FQ(point[0]), FQ(point[1]), FQ.one())


def _g2(point: G2Point) -> Any:
    (x0, x1), (y0, y1) = point
    return (FQ2([x0, x1]), FQ2([y0, y1]), FQ2.one())


def verify(vk: VerificationKey, proof: Proof, public_signals: Sequence[int]) -> bool:
    """Groth16 verification; False (never an exception) for any invalid proof or input."""
    if not isinstance(proof, Proof) or not public_signals_valid(public_signals, len(vk.ic) - 1):
        return False
    if not g2_in_subgroup(proof.b):
        return False
    vk_x = _g1(vk.ic[0])
    for value, point in zip(public_signals, vk.ic[1:]):
        vk_x = add(vk_x, multiply(_g1(point), value))
    product = (
        pairing(_g2(proof.b), neg(_g1(proof.a)), final_exponentiate=False)
        * pairing(_g2(vk.beta), _g1(vk.alpha), final_exponentiate=False)
        * pairing(_g2(vk.gamma), vk_x, final_exponentiate=False)
        * pairing(_g2(vk.delta), _g1(proof.c), final_exponentiate=False)
    )
    return bool(final_exponentiate(product) == FQ12.one())


class ReferenceBackend:
    """The py_ecc verifier on the pinned Semaphore ceremony keys (loaded once per depth)."""

    name = "reference"

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._directory = directory
        self._keys: dict[int, VerificationKey] = {}
        self._lock = threading.Lock()

    def key(self, depth: int) -> VerificationKey:
        check_depth(depth)
        with self._lock:
            found = self._keys.get(depth)
            if found is None:
                raw = load_artifacts(depth, self._directory).read("vkey")
                found = VerificationKey.from_snarkjs(json.loads(raw))
                self._keys[depth] = found
            return found

    def verify(self, depth: int, proof: Proof, public_signals: Sequence[int]) -> bool:
        return verify(self.key(depth), proof, public_signals)


_default = ProcessDefault(ReferenceBackend)


def default_backend() -> ReferenceBackend:
    """The process-wide reference backend on the default artifacts directory."""
    return _default.get()
