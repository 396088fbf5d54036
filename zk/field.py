"""The BN254 (alt_bn128) fields used throughout Semaphore v4.

References:
- EIP-196/197 (the curve of the EVM precompiles).
- circom / snarkjs: circuit signals live in the scalar field ``R`` (circom's ``p``,
  Solidity's ``SNARK_SCALAR_FIELD``).

Policy: values outside the field are *rejected*, never reduced.
"""

from __future__ import annotations

#: Order of the BN254 G1 group: the scalar field of circuits and Poseidon.
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617

#: The BN254 base field (coordinates of G1/G2 points).
Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583


class FieldError(ValueError):
    """A value is not a canonical element of the field it must belong to."""


def check_scalar(value: int, name: str = "value") -> int:
    """Return ``value`` if it is an ``int`` with ``0 <= value < R``; raise ``FieldError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < R:
        raise FieldError(f"{name} is not in the BN254 scalar field (0 <= x < r)")
    return value


def parse_decimal(text: str, name: str = "value", modulus: int = R) -> int:
    """Parse a canonical decimal field element: ASCII digits only, no sign, no
    whitespace, no leading zeros (except ``"0"`` itself), and below ``modulus``.

    snarkjs-style JSON carries field elements as decimal strings; accepting
    ``" 42"`` or ``"042"`` would give one value several encodings (malleability).
    """
    if not isinstance(text, str):
        raise FieldError(f"{name} must be a decimal string")
    if not text or not text.isascii() or not text.isdigit():
        raise FieldError(f"{name} is not a canonical decimal")
    if len(text) > 1 and text[0] == "0":
        raise FieldError(f"{name} has leading zeros")
    if len(text) > 80:
        raise FieldError(f"{name} is too long")
    value = int(text)
    if value >= modulus:
        raise FieldError(f"{name} is not below the field modulus")
    return value
