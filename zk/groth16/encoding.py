"""Groth16 proof encodings over BN254 (alt_bn128), parsed strictly.

Three encodings of the same proof (A in G1, B in G2, C in G1) are supported:

- the Semaphore / EVM packing of 8 integers ``[a0, a1, b01, b00, b11, b10, c0, c1]``
  (``packGroth16Proof`` in ``@zk-kit/utils`` ``src/proof-packing.ts``): each G2
  coordinate ``x = x0 + x1*u`` is written imaginary part first, the order of the
  EIP-197 pairing precompile;
- the snarkjs proof JSON (``pi_a``, ``pi_b``, ``pi_c`` as decimal strings, G2
  coordinates real part first, projective ``z`` = ``"1"`` / ``["1", "0"]``);
- the 256-byte blob of ``groth16py`` (``prove_wtns`` output, ``Verifier.verify`` input):
  the 8 packed integers above as 32-byte big-endian words (checked by experiment: a
  snarkjs proof in this layout verifies under the ceremony key, other layouts do not).

Every coordinate must be a canonical element of the base field (``< Q``; decimals via
``zk.field.parse_decimal``), every point on its curve (G1: ``y^2 = x^3 + 3``; G2, over
Fq2 = Fq[u]/(u^2 + 1): ``y^2 = x^3 + 3/(9 + u)``, EIP-197) and not the point at
infinity. G1 has cofactor 1; G2 membership in the order-r subgroup costs a scalar
multiplication (about 30 ms in Python), so it is a separate step that the parsers run
unless ``check_subgroup=False`` (for callers whose verifier enforces it itself).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zk.field import Q, FieldError, R, parse_decimal

G1Point = tuple[int, int]
Fq2 = tuple[int, int]  # (c0, c1) for c0 + c1*u
G2Point = tuple[Fq2, Fq2]

# b / (9 + u) of the twist, EIP-197.
_B2: Fq2 = (
    19485874751759354771024239261021720505790618469301721065564631296452457478373,
    266929791119991161246907387137283842545076965332900288569378510910307636690,
)


class ProofEncodingError(ValueError):
    """A Groth16 proof is malformed: wrong shape, non-canonical number, or invalid point."""


def _fq2_mul(a: Fq2, b: Fq2) -> Fq2:
    return ((a[0] * b[0] - a[1] * b[1]) % Q, (a[0] * b[1] + a[1] * b[0]) % Q)


def _check_coordinate(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofEncodingError(f"{name} must be an integer")
    if not 0 <= value < Q:
        raise ProofEncodingError(f"{name} is not a canonical base-field element (0 <= x < q)")
    return value


def g1_on_curve(point: G1Point) -> bool:
    x, y = point
    return (y * y - x * x * x - 3) % Q == 0


def g2_on_curve(point: G2Point) -> bool:
    x, y = point
    x3 = _fq2_mul(_fq2_mul(x, x), x)
    return _fq2_mul(y, y) == ((x3[0] + _B2[0]) % Q, (x3[1] + _B2[1]) % Q)


def g2_in_subgroup(point: G2Point) -> bool:
    """Whether an on-curve G2 point lies in the order-r subgroup (``r * P == O``, via py_ecc)."""
    from py_ecc.fields import optimized_bn128_FQ2 as FQ2
    from py_ecc.optimized_bn128.optimized_curve import curve_order, is_inf, multiply

    (x0, x1), (y0, y1) = point
    jacobian = (FQ2([x0, x1]), FQ2([y0, y1]), FQ2.one())
    return bool(is_inf(multiply(jacobian, curve_order)))


@dataclass(frozen=True)
class Proof:
    """A Groth16 proof with validated coordinates (canonical, on curve, not infinity)."""

    a: G1Point
    b: G2Point
    c: G1Point

    def __post_init__(self) -> None:
        for name in ("a", "c"):
            point = getattr(self, name)
            if not isinstance(point, tuple) or len(point) != 2:
                raise ProofEncodingError(f"{name} must be a pair of integers")
            x, y = (_check_coordinate(v, f"{name}.{i}") for i, v in enumerate(point))
            # (0, 0), the EVM encoding of the point at infinity, is not on the curve.
            if not g1_on_curve((x, y)):
                raise ProofEncodingError(f"{name} is not a point of G1")
        if not (isinstance(self.b, tuple) and len(self.b) == 2 and all(isinstance(p, tuple) and len(p) == 2 for p in self.b)):
            raise ProofEncodingError("b must be ((x0, x1), (y0, y1))")
        for i, v in enumerate((*self.b[0], *self.b[1])):
            _check_coordinate(v, f"b.{i}")
        if not g2_on_curve(self.b):
            raise ProofEncodingError("b is not a point of the G2 twist curve")

    def check_subgroup(self) -> Proof:
        """Return ``self`` if ``b`` is in the order-r subgroup of G2; raise otherwise."""
        if not _cached_in_subgroup(self.b):
            raise ProofEncodingError("b is not in the order-r subgroup of G2")
        return self

    # --- Semaphore / EVM packing -------------------------------------------------------

    @classmethod
    def from_points(cls, points: Sequence[int], *, check_subgroup: bool = True) -> Proof:
        """Parse ``[a0, a1, b01, b00, b11, b10, c0, c1]`` (integers)."""
        if not isinstance(points, (list, tuple)) or len(points) != 8:
            raise ProofEncodingError("a packed proof has exactly 8 integers")
        p = [_check_coordinate(v, f"points[{i}]") for i, v in enumerate(points)]
        proof = cls((p[0], p[1]), ((p[3], p[2]), (p[5], p[4])), (p[6], p[7]))
        return proof.check_subgroup() if check_subgroup else proof

    def to_points(self) -> tuple[int, int, int, int, int, int, int, int]:
        (x0, x1), (y0, y1) = self.b
        return (self.a[0], self.a[1], x1, x0, y1, y0, self.c[0], self.c[1])

    @classmethod
    def from_decimal_points(cls, points: Sequence[str], *, check_subgroup: bool = True) -> Proof:
        """Parse the packing as 8 canonical decimal strings (the SemaphoreProof JSON ``points``)."""
        if not isinstance(points, (list, tuple)) or len(points) != 8:
            raise ProofEncodingError("a packed proof has exactly 8 decimal strings")
        return cls.from_points([_decimal(v, f"points[{i}]") for i, v in enumerate(points)], check_subgroup=check_subgroup)

    def to_decimal_points(self) -> list[str]:
        return [str(v) for v in self.to_points()]

    # --- groth16py / EVM bytes ---------------------------------------------------------

    @classmethod
    def from_bytes(cls, blob: bytes, *, check_subgroup: bool = True) -> Proof:
        """Parse the 256-byte blob (the packing as 32-byte big-endian words)."""
        if not isinstance(blob, (bytes, bytearray)) or len(blob) != 256:
            raise ProofEncodingError("a proof blob is exactly 256 bytes")
        words = [int.from_bytes(blob[i : i + 32], "big") for i in range(0, 256, 32)]
        return cls.from_points(words, check_subgroup=check_subgroup)

    def to_bytes(self) -> bytes:
        return b"".join(v.to_bytes(32, "big") for v in self.to_points())

    # --- snarkjs JSON ------------------------------------------------------------------

    @classmethod
    def from_snarkjs(cls, data: Mapping[str, Any], *, check_subgroup: bool = True) -> Proof:
        """Parse a snarkjs Groth16 proof object (``pi_a``, ``pi_b``, ``pi_c``).

        Points carry the projective ``z`` of snarkjs (``"1"``, ``["1", "0"]``) or, as
        ``unpackGroth16Proof`` writes them, none; ``protocol``/``curve`` if present must be
        ``groth16``/``bn128``; no other keys.
        """
        if not isinstance(data, Mapping):
            raise ProofEncodingError("a snarkjs proof is a JSON object")
        extra = set(data) - {"pi_a", "pi_b", "pi_c", "protocol", "curve"}
        if extra:
            raise ProofEncodingError(f"unexpected keys in snarkjs proof: {sorted(extra)}")
        if data.get("protocol", "groth16") != "groth16" or data.get("curve", "bn128") != "bn128":
            raise ProofEncodingError("not a Groth16 proof over bn128")
        a = g1_from_json(data.get("pi_a"), "pi_a")
        c = g1_from_json(data.get("pi_c"), "pi_c")
        proof = cls(a, g2_from_json(data.get("pi_b"), "pi_b"), c)
        return proof.check_subgroup() if check_subgroup else proof

    def to_snarkjs(self) -> dict[str, Any]:
        """The proof as snarkjs ``groth16.prove`` writes it."""
        (x0, x1), (y0, y1) = self.b
        return {
            "pi_a": [str(self.a[0]), str(self.a[1]), "1"],
            "pi_b": [[str(x0), str(x1)], [str(y0), str(y1)], ["1", "0"]],
            "pi_c": [str(self.c[0]), str(self.c[1]), "1"],
            "protocol": "groth16",
            "curve": "bn128",
        }


@functools.lru_cache(maxsize=256)
def _cached_in_subgroup(point: G2Point) -> bool:
    return g2_in_subgroup(point)


def _decimal(text: object, name: str, modulus: int = Q) -> int:
    try:
        return parse_decimal(text, name, modulus)  # type: ignore[arg-type]
    except FieldError as exc:
        raise ProofEncodingError(str(exc)) from None


def g1_from_json(value: object, name: str) -> G1Point:
    """Parse a snarkjs G1 point ``[x, y]`` or ``[x, y, "1"]`` (canonical decimals, on curve)."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise ProofEncodingError(f"{name} must have 2 or 3 coordinates")
    if len(value) == 3 and value[2] != "1":
        raise ProofEncodingError(f'{name} must be affine (z = "1")')
    point = (_decimal(value[0], f"{name}[0]"), _decimal(value[1], f"{name}[1]"))
    if not g1_on_curve(point):
        raise ProofEncodingError(f"{name} is not a point of G1")
    return point


def g2_from_json(value: object, name: str) -> G2Point:
    """Parse a snarkjs G2 point ``[[x0, x1], [y0, y1]]`` (optionally ``["1", "0"]`` as z),
    canonical decimals, on the twist curve (the subgroup is not checked here)."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise ProofEncodingError(f"{name} must have 2 or 3 rows")
    if len(value) == 3 and value[2] != ["1", "0"]:
        raise ProofEncodingError(f'{name} must be affine (z = ["1", "0"])')
    x, y = (_fq2_json(row, f"{name}[{i}]") for i, row in enumerate(value[:2]))
    if not g2_on_curve((x, y)):
        raise ProofEncodingError(f"{name} is not a point of the G2 twist curve")
    return (x, y)


def _fq2_json(value: object, name: str) -> Fq2:
    if not isinstance(value, list) or len(value) != 2:
        raise ProofEncodingError(f"{name} must have 2 coordinates")
    return (_decimal(value[0], f"{name}[0]"), _decimal(value[1], f"{name}[1]"))


def parse_public_signals(values: Sequence[str]) -> tuple[int, ...]:
    """Parse snarkjs public signals: a list of canonical decimals, each below r."""
    if not isinstance(values, (list, tuple)):
        raise ProofEncodingError("public signals must be a list of decimal strings")
    return tuple(_decimal(v, f"publicSignals[{i}]", R) for i, v in enumerate(values))


def public_signals_valid(values: Sequence[int], count: int) -> bool:
    """Whether ``values`` is exactly ``count`` integers in ``[0, r)`` (no bools)."""
    if not isinstance(values, (list, tuple)) or len(values) != count:
        return False
    return all(not isinstance(v, bool) and isinstance(v, int) and 0 <= v < R for v in values)
