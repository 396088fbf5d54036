"""Checked integers: one bound per kind of number and one way to check it.

Group ids are ``uint256`` on the contract (``contracts/ZkIdRegistry.sol``: ``groupCount++``,
so they are sequential from 0); the API bounds them to ``MAX_GROUP_ID`` = 2^53 - 1
(docs/api.md) so that a JSON number survives every parser (JavaScript, floats). Every id the
API accepts is therefore a valid contract id, and the registry and the relays refuse the
same ids. ``uint64`` values (root windows, admission rounds) are bounded by ``UINT64_MAX``.
"""

from __future__ import annotations

#: The largest group id the API accepts (docs/api.md): 2^53 - 1, JSON-safe.
MAX_GROUP_ID = 2**53 - 1
#: The largest ``uint64`` (the contract's root window; admission rounds and scopes).
UINT64_MAX = 2**64 - 1


def bounded_int(value: object, low: int, high: int) -> int | None:
    """``value`` if it is an ``int`` (not a ``bool``) in ``[low, high]``, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def json_integer(value: object) -> int | None:
    """A JSON integer as JSON Schema defines one (``5`` or ``5.0``; JavaScript cannot tell
    them apart), else None: strings, booleans, fractions, non-finite numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def range_text(low: int, high: int) -> str:
    """``[low, high]`` as an error message names it."""
    return f"[{low}, {high}]"
