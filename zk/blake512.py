"""BLAKE-512: the original BLAKE (SHA-3 finalist), not BLAKE2; ``hashlib`` lacks it.

Spec: J.-P. Aumasson, L. Henzen, W. Meier, R. C.-W. Phan, "SHA-3 proposal BLAKE"
(version 1.3, 2010), section 2.2 (BLAKE-64 / BLAKE-512): 64-bit words, 16 rounds,
G rotations 32/25/16/11, SHA-512's IV, constants from the digits of pi, no salt.
Used by @zk-kit/eddsa-poseidon (``src/blake.ts``, BLAKE1 engine) to expand private keys.
"""

from __future__ import annotations

import struct

__all__ = ["blake512"]

_MASK = 0xFFFFFFFFFFFFFFFF

#: Initial value: the same words as SHA-512's.
_IV = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)  # fmt: skip

#: c_0..c_15: the first 1024 bits of the fractional part of pi.
_C = (
    0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89,
    0x452821E638D01377, 0xBE5466CF34E90C6C, 0xC0AC29B7C97C50DD, 0x3F84D5B5B5470917,
    0x9216D5D98979FB1B, 0xD1310BA698DFB5AC, 0x2FFD72DBD01ADFB7, 0xB8E1AFED6A267E96,
    0xBA7C9045F12C7F99, 0x24A19947B3916CF7, 0x0801F2E2858EFC16, 0x636920D871574E69,
)  # fmt: skip

#: The ten message permutations sigma_0..sigma_9 (round r uses sigma_{r mod 10}).
_SIGMA = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3),
    (11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4),
    (7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8),
    (9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13),
    (2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9),
    (12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11),
    (13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10),
    (6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5),
    (10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0),
)

#: The state indices (a, b, c, d) of G_0..G_7: four columns, then four diagonals.
_G_LANES = (
    (0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
    (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14),
)  # fmt: skip

_ROUNDS = 16
_BLOCK = 128


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (64 - n))) & _MASK


def _compress(h: list[int], block: bytes, counter: int) -> None:
    """The compression function (spec 2.2.1-2.2.3) with salt s = 0; updates ``h`` in place."""
    m = struct.unpack(">16Q", block)
    t0, t1 = counter & _MASK, counter >> 64
    v = h + [_C[0], _C[1], _C[2], _C[3], t0 ^ _C[4], t0 ^ _C[5], t1 ^ _C[6], t1 ^ _C[7]]
    for r in range(_ROUNDS):
        s = _SIGMA[r % 10]
        for i, (a, b, c, d) in enumerate(_G_LANES):
            x, y = s[2 * i], s[2 * i + 1]
            v[a] = (v[a] + v[b] + (m[x] ^ _C[y])) & _MASK
            v[d] = _rotr(v[d] ^ v[a], 32)
            v[c] = (v[c] + v[d]) & _MASK
            v[b] = _rotr(v[b] ^ v[c], 25)
            v[a] = (v[a] + v[b] + (m[y] ^ _C[x])) & _MASK
            v[d] = _rotr(v[d] ^ v[a], 16)
            v[c] = (v[c] + v[d]) & _MASK
            v[b] = _rotr(v[b] ^ v[c], 11)
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]  # the salt words are zero


def blake512(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE-512 digest (64 bytes) of ``data``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("blake512 takes bytes")
    msg = bytes(data)
    bit_len = len(msg) * 8
    # Padding (spec 2.2.1): a 1 bit, zeros to 895 mod 1024, a 1 bit, the 128-bit length.
    pad_len = (111 - len(msg)) % _BLOCK
    if pad_len == 0:
        padded = msg + b"\x81"
    else:
        padded = msg + b"\x80" + b"\x00" * (pad_len - 1) + b"\x01"
    padded += bit_len.to_bytes(16, "big")
    h = list(_IV)
    for offset in range(0, len(padded), _BLOCK):
        # The counter holds the message bits up to the end of this block; a block made
        # only of padding is compressed with counter 0.
        counter = min(bit_len, (offset + _BLOCK) * 8) if offset < len(msg) else 0
        _compress(h, padded[offset : offset + _BLOCK], counter)
    return struct.pack(">8Q", *h)
