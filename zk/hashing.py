"""Semaphore v4 message and scope encoding.

A Semaphore proof binds a ``message`` and a ``scope``. The client library first turns
each into an integer, then the circuit receives ``keccak256(value as 32 bytes,
big-endian) >> 8`` (256 - 8 = 248 bits, so it is always below the BN254 scalar field).

Reference: ``@semaphore-protocol/proof`` 4.14.3, ``src/to-bigint.ts`` and
``src/hash.ts``, which delegate to ethers 6.13.4 (``toBigInt``/``getBigInt`` in
``utils/maths.js``, ``encodeBytes32String`` in ``abi/bytes32.js``, ``toBeHex``).

Conversion rules (``to_bigint``), in the order the reference applies them:

1. ``int``: itself (Python ints play the part of JS bigints: no 2**53 limit).
2. ``bytes``: big-endian unsigned integer (any length; empty is 0).
3. ``str``: ethers' ``getBigInt``: if it starts with ``-`` not followed by another
   ``-``, the negation of the rest read by JS ``BigInt()``; otherwise JS ``BigInt()`` of
   the whole string (JS whitespace trimmed; decimal with optional sign, or ``0x``/``0o``/
   ``0b`` without sign; whitespace-only reads as 0). The empty string and anything
   ``BigInt()`` rejects fall back to text: UTF-8 (as ethers encodes UTF-16 strings) of
   at most 31 bytes, right-padded with zeros to 32 bytes, read big-endian.

The conversion may return a negative or >= 2**256 integer, as the reference does;
``semaphore_hash`` then rejects it, as ``toBeHex(value, 32)`` does in the reference.
Values are never reduced. One deliberate difference: a decimal string of more than 4000
significant digits (JS converts it, then ``hash`` rejects it) is refused already by
``to_bigint``, which keeps Python's ``int()`` digit limit from surfacing.
"""

from __future__ import annotations

import re
from typing import Final

from Crypto.Hash import keccak

__all__ = ["MessageError", "MAX_TEXT_BYTES", "to_bigint", "semaphore_hash", "hash_message"]

#: Longest text accepted: ethers keeps one byte for a terminating zero.
MAX_TEXT_BYTES: Final = 31
_TWO_256: Final = 1 << 256

# ECMAScript StrWhiteSpaceChar: WhiteSpace (TAB, VT, FF, ZWNBSP, every Zs) and
# LineTerminator (LF, CR, LS, PS). Python's str.isspace() is a different set
# (it includes U+001C..U+001F and U+0085), so the set is spelled out.
_JS_WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# ECMAScript StringIntegerLiteral (after trimming); ASCII digits only, unlike int().
_DECIMAL: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)
_PREFIXED: Final = re.compile(r"0(?:[xX]([0-9a-fA-F]+)|[oO]([0-7]+)|[bB]([01]+))", re.ASCII)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Python refuses int(str) beyond this many digits; such values are far above 2**256.
_MAX_DECIMAL_DIGITS: Final = 4000


class MessageError(ValueError):
    """A Semaphore message or scope cannot be converted or hashed."""


def _js_string_to_bigint(text: str) -> int | None:
    """JS ``BigInt(text)`` for a string, or ``None`` where JS throws a SyntaxError."""
    body = text.strip(_JS_WHITESPACE)
    if not body:
        return 0
    if _DECIMAL.fullmatch(body):
        digits = body.lstrip("+-").lstrip("0") or "0"
        if len(digits) > _MAX_DECIMAL_DIGITS:
            raise MessageError(f"integer string has more than {_MAX_DECIMAL_DIGITS} digits")
        return -int(digits, 10) if body[0] == "-" else int(digits, 10)
    match = _PREFIXED.fullmatch(body)
    if match is None:
        return None
    hex_digits, oct_digits, bin_digits = match.groups()
    if hex_digits is not None:
        return int(hex_digits, 16)
    if oct_digits is not None:
        return int(oct_digits, 8)
    assert bin_digits is not None
    return int(bin_digits, 2)


def _ethers_string_to_bigint(text: str) -> int | None:
    """ethers ``getBigInt`` for a string; ``None`` where it throws."""
    if text == "":
        return None
    if text[0] == "-" and text[1:2] != "-":
        rest = _js_string_to_bigint(text[1:])
        return None if rest is None else -rest
    return _js_string_to_bigint(text)


def _js_utf8(text: str) -> bytes:
    """ethers ``toUtf8Bytes``: UTF-8 of a JS (UTF-16) string.

    A high surrogate must be followed by a low one; a lone low surrogate is encoded
    as a 3-byte sequence like any other BMP code unit.
    """
    if _SURROGATE.search(text) is None:
        return text.encode("utf-8")
    units = text.encode("utf-16-le", "surrogatepass")
    codes = [int.from_bytes(units[i : i + 2], "little") for i in range(0, len(units), 2)]
    out = bytearray()
    i = 0
    while i < len(codes):
        code = codes[i]
        if 0xD800 <= code <= 0xDBFF:
            if i + 1 >= len(codes) or not 0xDC00 <= codes[i + 1] <= 0xDFFF:
                raise MessageError("invalid surrogate pair in text")
            code = 0x10000 + ((code - 0xD800) << 10) + (codes[i + 1] - 0xDC00)
            i += 1
        if code < 0x80:
            out.append(code)
        elif code < 0x800:
            out += bytes((0xC0 | code >> 6, 0x80 | code & 0x3F))
        elif code < 0x10000:
            out += bytes((0xE0 | code >> 12, 0x80 | (code >> 6) & 0x3F, 0x80 | code & 0x3F))
        else:
            out += bytes(
                (0xF0 | code >> 18, 0x80 | (code >> 12) & 0x3F, 0x80 | (code >> 6) & 0x3F, 0x80 | code & 0x3F)
            )
        i += 1
    return bytes(out)


def to_bigint(value: int | str | bytes) -> int:
    """Convert a message or scope to an integer exactly as Semaphore's ``toBigInt`` does.

    Raises ``MessageError`` for text longer than 31 UTF-8 bytes, for text with an
    unpaired high surrogate, and for unsupported types (``bool``, ``float``, ...).
    """
    if isinstance(value, bool):
        raise MessageError("message/scope must be an int, str or bytes, not bool")
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "big")
    if isinstance(value, str):
        number = _ethers_string_to_bigint(value)
        if number is not None:
            return number
        encoded = _js_utf8(value)
        if len(encoded) > MAX_TEXT_BYTES:
            raise MessageError(
                f"text message/scope is {len(encoded)} bytes in UTF-8; at most {MAX_TEXT_BYTES} are allowed"
            )
        return int.from_bytes(encoded.ljust(32, b"\0"), "big")
    raise MessageError(f"message/scope must be an int, str or bytes, not {type(value).__name__}")


def semaphore_hash(value: int) -> int:
    """The circuit input for a converted message or scope: ``keccak256(uint256) >> 8``.

    Raises ``MessageError`` unless ``0 <= value < 2**256`` (the reference's ``toBeHex``
    throws "unsigned value cannot be negative" / "value exceeds width (32 bytes)").
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError("semaphore_hash takes an int; convert with to_bigint first")
    if value < 0:
        raise MessageError("message/scope cannot be negative")
    if value >= _TWO_256:
        raise MessageError("message/scope exceeds 32 bytes (must be below 2**256)")
    digest = keccak.new(digest_bits=256, data=value.to_bytes(32, "big")).digest()
    return int.from_bytes(digest, "big") >> 8


def hash_message(value: int | str | bytes) -> int:
    """``semaphore_hash(to_bigint(value))``: what ``generateProof`` feeds the circuit."""
    return semaphore_hash(to_bigint(value))
