#!/usr/bin/env python3
"""Generate the Poseidon (BN254, x^5) round constants and MDS matrices used by circomlib.

Implements the parameter generation of the Poseidon paper (Grassi, Khovratovich,
Rechberger, Roy, Schofnegger, "Poseidon: A New Hash Function for Zero-Knowledge Proof
Systems", ePrint 2019/458, Appendix F; reference algorithm: ``generate_parameters_grain.sage``
of the hadeshash repository), with circomlib's choices: prime field (field = 1), S-box
x^alpha (sbox = 0), n = 254 bits, t = 2..17, R_F = 8 and R_P per t as below.

Algorithm, briefly:
- An 80-bit Grain LFSR is seeded with the bits of (field: 2, sbox: 4, n: 12, t: 12,
  R_F: 10, R_P: 10) followed by thirty 1-bits, then clocked 160 times (discarded).
  Feedback: b[i+80] = b[i+62] ^ b[i+51] ^ b[i+38] ^ b[i+23] ^ b[i+13] ^ b[i].
- Output bits go through a self-shrinking step: bits are taken in pairs (a, b);
  b is emitted when a == 1, the pair is dropped when a == 0.
- Round constants: (R_F + R_P) * t integers of n bits each (big-endian), each
  re-drawn while it is >= p (rejection sampling).
- MDS: a Cauchy matrix M[i][j] = 1 / (x_i + y_j) from 2t further n-bit draws
  (reduced mod p), re-drawn if they are not pairwise distinct.

The output (``zk/data/poseidon_constants.json``) holds, for each arity n = t - 1,
the constants as hex strings. With ``--check`` the script compares its output with
poseidon-lite 0.3.0's published constants (via Node), which it must equal.

Usage: python scripts/gen_poseidon_constants.py [--check] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
P = 21888242871839275222246405745257275088548364400416034343698204186575808495617
N_BITS = 254
R_F = 8
R_P = [56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68]  # index t - 2
FIELD_PRIME = 1
SBOX_POWER = 0


def _grain_bits(t: int, r_f: int, r_p: int) -> Iterator[int]:
    """The self-shrunk Grain LFSR output for the parameter set (t, R_F, R_P)."""
    seed = (
        format(FIELD_PRIME, "02b")
        + format(SBOX_POWER, "04b")
        + format(N_BITS, "012b")
        + format(t, "012b")
        + format(r_f, "010b")
        + format(r_p, "010b")
        + "1" * 30
    )
    assert len(seed) == 80
    # Bit i of `state` is the i-th oldest bit of the register (seed[0] is bit 0).
    state = sum(int(bit) << i for i, bit in enumerate(seed))

    def clock() -> int:
        nonlocal state
        new = ((state >> 62) ^ (state >> 51) ^ (state >> 38) ^ (state >> 23) ^ (state >> 13) ^ state) & 1
        state = (state >> 1) | (new << 79)
        return new

    for _ in range(160):
        clock()
    while True:
        first = clock()
        second = clock()
        if first == 1:
            yield second


def _draw(bits: Iterator[int], n: int) -> int:
    value = 0
    for _ in range(n):
        value = (value << 1) | next(bits)
    return value


def generate(t: int) -> tuple[list[int], list[list[int]]]:
    """Round constants C (flat, round-major) and MDS matrix M for state width t."""
    r_p = R_P[t - 2]
    bits = _grain_bits(t, R_F, r_p)
    constants: list[int] = []
    for _ in range((R_F + r_p) * t):
        c = _draw(bits, N_BITS)
        while c >= P:
            c = _draw(bits, N_BITS)
        constants.append(c)
    while True:
        draws = [_draw(bits, N_BITS) % P for _ in range(2 * t)]
        while len(set(draws)) != len(draws):
            draws = [_draw(bits, N_BITS) % P for _ in range(2 * t)]
        xs, ys = draws[:t], draws[t:]
        if all((x + y) % P != 0 for x in xs for y in ys):
            break
    mds = [[pow(x + y, -1, P) for y in ys] for x in xs]
    return constants, mds


def _poseidon_lite_constants() -> dict[str, dict[str, list[str]]]:
    """poseidon-lite's C and M for each arity, as decimal strings (for --check)."""
    script = r"""
const out = {};
for (let n = 1; n <= 16; n++) {
  const mod = require(`${process.cwd()}/node_modules/poseidon-lite/constants/${n}.js`).default;
  const dec = (b64) => BigInt('0x' + (Buffer.from(b64, 'base64').toString('hex') || '0')).toString();
  out[n] = { C: mod.C.map(dec), M: mod.M.map((row) => row.map(dec)) };
}
process.stdout.write(JSON.stringify(out));
"""
    proc = subprocess.run(["node", "-e", script], capture_output=True, text=True, cwd=ROOT, check=True)
    result: dict[str, dict[str, list[str]]] = json.loads(proc.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "zk" / "data" / "poseidon_constants.json")
    parser.add_argument("--check", action="store_true", help="compare with poseidon-lite (needs node_modules)")
    args = parser.parse_args()

    table: dict[str, dict[str, object]] = {}
    generated: dict[int, tuple[list[int], list[list[int]]]] = {}
    for n in range(1, 17):
        t = n + 1
        params = generate(t)
        generated[n] = params
        table[str(n)] = {
            "t": t,
            "R_F": R_F,
            "R_P": R_P[t - 2],
            "C": [format(c, "x") for c in params[0]],
            "M": [[format(m, "x") for m in row] for row in params[1]],
        }
    document = {
        "description": "Poseidon over BN254 (x^5), circomlib parameters; generated by scripts/gen_poseidon_constants.py (Grain LFSR, ePrint 2019/458). Keys are arities n = t - 1; C is round-major; values are hex.",
        "prime": format(P, "x"),
        "arities": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")

    if args.check:
        reference = _poseidon_lite_constants()
        bad = 0
        for n in range(1, 17):
            ref = reference[str(n)]
            ours = generated[n]
            c_ok = [int(v) for v in ref["C"]] == ours[0]
            m_ok = [[int(v) for v in row] for row in ref["M"]] == ours[1]
            print(f"arity {n:2d}: C {'ok' if c_ok else 'MISMATCH'}  M {'ok' if m_ok else 'MISMATCH'}")
            bad += (not c_ok) + (not m_ok)
        if bad:
            print("constants differ from poseidon-lite", file=sys.stderr)
            return 1
        print("all constants equal poseidon-lite 0.3.0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
