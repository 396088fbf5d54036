"""Strict, bounded JSON parsing for untrusted input (request bodies, files given to the CLI).

Implements RFC 8259 (The JavaScript Object Notation Data Interchange Format) with the
restrictions its section 4 and 9 allow a parser to make, and the I-JSON profile
(RFC 7493, section 2.3: member names must be unique):

- the text is UTF-8 (RFC 8259 section 8.1; a byte-order mark is refused);
- an object with a repeated member name is refused (``duplicate_key``), never
  "last one wins", so that two parsers can never read two different values;
- nesting deeper than ``max_depth`` arrays/objects is refused (``too_deep``) *before*
  ``json.loads`` runs: CPython's parser recurses on the C stack, and a process whose
  recursion limit was raised (py_ecc sets 100,000) crashes on ``[[[[...`` instead of
  raising ``RecursionError``;
- ``NaN``/``Infinity``, numbers that overflow a float, and integers CPython will not
  convert (more than 4,300 digits) are ``invalid_json``; floats can be refused entirely.

Every refusal is a :class:`JsonInputError` (a ``ValueError``) with a machine-readable
``code``; nothing else escapes :func:`loads`.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

#: Far deeper than any document this project reads (evidence bundles nest ~5 levels),
#: far below the recursion limit.
MAX_DEPTH = 64

INVALID = "invalid_json"
DUPLICATE_KEY = "duplicate_key"
TOO_DEEP = "too_deep"

# A string token, its closing quote optional so that an unterminated string consumes the
# rest of the text: every character is scanned once (no quadratic retries).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_RUNS = re.compile(r"\[+|\]+")
_ONE_KIND = str.maketrans("{}", "[]")


class JsonInputError(ValueError):
    """The input is not acceptable JSON; ``code`` says why (``invalid_json``,
    ``duplicate_key`` or ``too_deep``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def nesting_depth(text: str) -> int:
    """How deep arrays/objects nest in ``text``, brackets inside strings not counted.

    Exact for valid JSON, an upper bound for any text (so ``json.loads`` never recurses
    deeper). Linear time in C-speed string operations: two rounds strip innermost pairs
    (``[]``, the leaves, one level each), then the prefix sums run over runs of brackets.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_ONE_KIND)
    stripped = 0
    for _ in range(2):
        shorter = brackets.replace("[]", "")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
        stripped += 1
    if not brackets:
        return stripped
    runs = [len(run) if run[0] == "[" else -len(run) for run in _RUNS.findall(brackets)]
    return stripped + max(0, max(accumulate(runs)))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JsonInputError(DUPLICATE_KEY, "duplicate key in a JSON object")
    return result


def _no_constant(name: str) -> Any:
    raise JsonInputError(INVALID, f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonInputError(INVALID, "a number is too large")
    return value


def _no_float(text: str) -> Any:
    raise JsonInputError(INVALID, "fractional numbers are not allowed here")


def loads(
    text: str | bytes | bytearray,
    *,
    max_depth: int = MAX_DEPTH,
    floats: bool = True,
    error: type[ValueError] | None = None,
) -> Any:
    """Parse ``text`` strictly (module docstring); raise :class:`JsonInputError`, or with
    ``error`` that exception (a ``ValueError`` type taking the message), for a caller
    whose refusals have their own type (``RecordError``, ``BundleError``...)."""
    if error is None:
        return _loads(text, max_depth, floats)
    try:
        return _loads(text, max_depth, floats)
    except JsonInputError as exc:
        raise error(str(exc)) from None


def _loads(text: str | bytes | bytearray, max_depth: int, floats: bool) -> Any:
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonInputError(INVALID, "JSON text must be UTF-8") from None
    if not isinstance(text, str):
        raise JsonInputError(INVALID, "JSON input must be text")
    # Cheap bound first: fewer opening brackets than the limit cannot nest deeper.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise JsonInputError(TOO_DEEP, f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float if floats else _no_float,
        )
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(INVALID, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # only if the depth estimate was wrong on broken text
        raise JsonInputError(TOO_DEEP, "JSON nested too deeply") from None
    except ValueError:  # e.g. an integer of more than 4,300 digits (CPython's limit)
        raise JsonInputError(INVALID, "invalid JSON: a number is too large") from None
