"""Poseidon over the BN254 scalar field (circomlib instance): the fast path used everywhere.

Same function as :func:`zk.poseidon_reference.poseidon_reference` (circomlib
``poseidon.circom`` / circomlibjs / poseidon-lite 0.3.0, ePrint 2019/458), evaluated in the
optimised form of the Poseidon paper's Appendix B:

1. In a partial round only ``state[0]`` meets the S-box, so the round constants added to
   the other elements are linear and are carried forward (through M) into the next
   round; each partial round then adds one scalar constant.
2. The MDS matrix of each partial round is factored as ``N = M'' @ M'`` with
   ``M' = diag(1, N_hat)`` (which commutes with an S-box on element 0) and a sparse
   ``M'' = [[n00, v], [w, I]]``; ``M'`` is pushed back into the previous round. A partial
   round then costs 2t - 1 multiplications instead of t^2.

The optimised constants are derived here from C and M (see ``_derive``), once per arity.
``poseidon2`` uses the Rust extension ``light-poseidon-python`` when it is installed and
agrees with the pure path on probe values (``BACKEND`` tells which one is in use); the
pure-Python path is always available.

Inputs are checked, never reduced: each must be an ``int`` in [0, R), 1 to 16 of them,
otherwise :class:`zk.field.FieldError` is raised.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from zk.field import R
from zk.poseidon_reference import MAX_INPUTS, check_inputs, params

__all__ = ["BACKEND", "MAX_INPUTS", "poseidon", "poseidon2", "poseidon2_python"]

Matrix = list[list[int]]


@dataclass(frozen=True)
class _Optimised:
    """Round data of the optimised form for one state width t."""

    t: int
    # Full rounds before the partial rounds: (constants added before the S-box, matrix after it).
    head: tuple[tuple[tuple[int, ...], tuple[tuple[int, ...], ...]], ...]
    # Partial rounds: (scalar constant for element 0, n00, v (t-1), w (t-1)).
    partial: tuple[tuple[int, int, tuple[int, ...], tuple[int, ...]], ...]
    # Full rounds after the partial rounds: constants before the S-box; the matrix is M.
    tail: tuple[tuple[int, ...], ...]
    mds: tuple[tuple[int, ...], ...]


def _mat_mul(a: Matrix, b: Matrix) -> Matrix:
    return [[sum(x * y for x, y in zip(row, col)) % R for col in zip(*b)] for row in a]


def _mat_vec(a: Sequence[Sequence[int]], v: Sequence[int]) -> list[int]:
    return [sum(x * y for x, y in zip(row, v)) % R for row in a]


def _mat_inv(a: Matrix) -> Matrix:
    """Inverse mod R by Gauss-Jordan elimination (the MDS sub-matrices are invertible)."""
    n = len(a)
    aug = [list(row) + [int(i == j) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if aug[r][col] % R)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        inv = pow(aug[col][col], -1, R)
        aug[col] = [x * inv % R for x in aug[col]]
        for r in range(n):
            if r != col and aug[r][col]:
                f = aug[r][col]
                aug[r] = [(x - f * y) % R for x, y in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


@cache
def _derive(n_inputs: int) -> _Optimised:
    """Turn the textbook constants (C, M) into the optimised round data."""
    p = params(n_inputs)
    t, half, rp = p.t, p.full_rounds // 2, p.partial_rounds
    m = [list(row) for row in p.mds]
    consts = [list(p.round_constants[r * t : (r + 1) * t]) for r in range(p.full_rounds + rp)]

    # 1. Carry the non-S-boxed part of each partial round's constants into the next round.
    for r in range(half, half + rp):
        carried = _mat_vec(m, [0, *consts[r][1:]])
        consts[r] = [consts[r][0]] + [0] * (t - 1)
        consts[r + 1] = [(a + b) % R for a, b in zip(consts[r + 1], carried)]

    # 2. Factor each partial round's matrix, last round first. With N = [[n00, n0], [n1, N_hat]]:
    #    M' = diag(1, N_hat), M'' = [[n00, n0 @ N_hat^-1], [n1, I]]; the previous round's
    #    matrix becomes M' @ M.
    m_hat = [row[1:] for row in m[1:]]
    m_hat_inv = _mat_inv(m_hat)
    n_hat = [[int(i == j) for j in range(t - 1)] for i in range(t - 1)]  # M' of the round after
    n_hat_inv = [row[:] for row in n_hat]
    partial: list[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = []
    for r in reversed(range(half, half + rp)):
        # N = M'_{r+1} @ M: first row unchanged, lower rows multiplied by the previous N_hat.
        lower = _mat_mul(n_hat, [row for row in m[1:]])
        w = [row[0] for row in lower]
        n_hat = [row[1:] for row in lower]
        n_hat_inv = _mat_mul(m_hat_inv, n_hat_inv)  # (N_hat_prev @ M_hat)^-1
        v = _mat_vec([list(col) for col in zip(*n_hat_inv)], m[0][1:])  # row vector n0 @ N_hat^-1
        partial.append((consts[r][0], m[0][0], tuple(v), tuple(w)))
    partial.reverse()
    # The last full round before the partial rounds absorbs the first partial round's M'.
    m_prime = [[1] + [0] * (t - 1)] + [[0, *row] for row in n_hat]
    last_head = _mat_mul(m_prime, m)

    head = tuple(
        (tuple(consts[r]), tuple(tuple(row) for row in (last_head if r == half - 1 else m)))
        for r in range(half)
    )
    tail = tuple(tuple(consts[r]) for r in range(half + rp, p.full_rounds + rp))
    return _Optimised(t, head, tuple(partial), tail, tuple(tuple(row) for row in m))


def _permute_first(state: list[int], o: _Optimised) -> int:
    """Element 0 of the permuted state (any width)."""
    s = state
    for consts, matrix in o.head:
        s = [x + c for x, c in zip(s, consts)]
        s = [_pow5(x) for x in s]
        s = [sum(a * b for a, b in zip(row, s)) % R for row in matrix]
    rest = s[1:]
    s0 = s[0]
    for k, n00, v, w in o.partial:
        x = _pow5(s0 + k)
        s0 = (n00 * x + sum(a * b for a, b in zip(v, rest))) % R
        # Left unreduced until the partial rounds end: a few hundred bits of growth
        # cost less than a reduction per round.
        rest = [a * x + b for a, b in zip(w, rest)]
    s = [s0] + [b % R for b in rest]
    mds = o.mds
    last = len(o.tail) - 1
    for i, consts in enumerate(o.tail):
        s = [_pow5(x + c) for x, c in zip(s, consts)]
        if i == last:
            return sum(a * b for a, b in zip(mds[0], s)) % R
        s = [sum(a * b for a, b in zip(row, s)) % R for row in mds]
    raise AssertionError("unreachable")


def _pow5(x: int) -> int:
    y = x * x % R
    y = y * y % R
    return y * x % R


@cache
def _t3_tables() -> tuple[
    tuple[tuple[int, int, int, tuple[int, ...]], ...],
    int,
    tuple[tuple[int, int, int, int, int], ...],
    tuple[tuple[int, int, int], ...],
    tuple[int, ...],
]:
    """The optimised round data for t = 3 flattened into tuples for the unrolled loop."""
    o = _derive(2)
    head = tuple((c[0], c[1], c[2], tuple(x for row in m for x in row)) for c, m in o.head)
    n00 = o.partial[0][1]
    assert all(p[1] == n00 for p in o.partial)
    part = tuple((k, v[0], v[1], w[0], w[1]) for k, _n00, v, w in o.partial)
    tail = tuple((c[0], c[1], c[2]) for c in o.tail)
    mds = tuple(x for row in o.mds for x in row)
    return head, n00, part, tail, mds


def _full_round(x0: int, x1: int, x2: int, m: tuple[int, ...]) -> tuple[int, int, int]:
    """A full round of t = 3 after its constants were added: x^5 on every element, then
    the MDS matrix ``m`` (row-major)."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    y = x0 * x0 % R
    s0 = (y * y % R) * x0 % R
    y = x1 * x1 % R
    s1 = (y * y % R) * x1 % R
    y = x2 * x2 % R
    s2 = (y * y % R) * x2 % R
    return (
        (m00 * s0 + m01 * s1 + m02 * s2) % R,
        (m10 * s0 + m11 * s1 + m12 * s2) % R,
        (m20 * s0 + m21 * s1 + m22 * s2) % R,
    )


def _poseidon2_python(a: int, b: int) -> int:
    """Poseidon with t = 3, unrolled: the same rounds as ``_permute_first``."""
    head, n00, part, tail, mds = _t3_tables()
    s0, s1, s2 = 0, a, b
    for c0, c1, c2, m in head:
        s0, s1, s2 = _full_round(s0 + c0, s1 + c1, s2 + c2, m)
    for k, v1, v2, w1, w2 in part:
        x = s0 + k
        y = x * x % R
        y = y * y % R
        x = y * x % R
        s0 = (n00 * x + v1 * s1 + v2 * s2) % R
        s1 += w1 * x  # reduced after the partial rounds
        s2 += w2 * x
    s1 %= R
    s2 %= R
    for c0, c1, c2 in tail:
        s0, s1, s2 = _full_round(s0 + c0, s1 + c1, s2 + c2, mds)
    return s0


def _load_native() -> Callable[[int, int], int] | None:
    """light-poseidon-python's Poseidon(2) (Rust, circomlib constants), if installed and correct.

    It reduces out-of-range inputs instead of rejecting them, so it is only ever called
    after our own range checks; it returns decimal strings.
    """
    try:
        module = importlib.import_module("light_poseidon_python")
        hasher = module.Hasher(2)
    except Exception:  # not installed, or an incompatible build
        return None

    def native(a: int, b: int) -> int:
        return int(hasher.hash([a, b]))

    # Never trust a binary blindly: it must agree with the pure path before it is used.
    probes = [(0, 0), (1, 2), (R - 1, R - 1), (0x1234567890ABCDEF << 180, 7)]
    try:
        if all(native(a, b) == _poseidon2_python(a, b) for a, b in probes):
            return native
    except Exception:
        pass
    return None


_NATIVE2 = _load_native()
_POSEIDON2 = _NATIVE2 or _poseidon2_python

#: Which implementation ``poseidon2`` uses: "light-poseidon-python" or "python".
BACKEND = "light-poseidon-python" if _NATIVE2 is not None else "python"


def poseidon(inputs: Sequence[int]) -> int:
    """Poseidon hash of 1..16 field elements (circomlib / poseidon-lite ``poseidonN``)."""
    values = check_inputs(inputs)
    if len(values) == 2:
        return _POSEIDON2(values[0], values[1])
    return _permute_first([0, *values], _derive(len(values)))


def poseidon2(a: int, b: int) -> int:
    """Poseidon hash of two field elements (LeanIMT node hash, identity commitment)."""
    # Inline checks: this is the hot path of tree building.
    if type(a) is not int or type(b) is not int or not (0 <= a < R and 0 <= b < R):
        check_inputs([a, b])
    return _POSEIDON2(a, b)


def poseidon2_python(a: int, b: int) -> int:
    """:func:`poseidon2` on the pure-Python optimised path, whatever ``BACKEND`` is."""
    check_inputs([a, b])
    return _poseidon2_python(a, b)
