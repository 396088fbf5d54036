"""zk/strict_json.py: the strict, depth-bounded JSON parser of every entry point."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.support.cli import run_python
from zk import strict_json
from zk.strict_json import DUPLICATE_KEY, INVALID, MAX_DEPTH, TOO_DEEP, JsonInputError, loads, nesting_depth

DEEP = 100_000


def _code(text: str | bytes, **kwargs: Any) -> str:
    with pytest.raises(JsonInputError) as info:
        loads(text, **kwargs)
    assert isinstance(info.value, ValueError)
    return info.value.code


def _random_value(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([1, -2, 3.5, True, None, "x", '[{"', "]}\\", "\\\"[", "ü[]"])
    if rng.random() < 0.5:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}[": _random_value(rng, depth - 1) for i in range(rng.randint(0, 3))}


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def test_parses_what_json_parses_and_measures_depth_exactly() -> None:
    rng = random.Random(7)
    for _ in range(500):
        value = _random_value(rng, rng.randint(0, 8))
        for text in (json.dumps(value), json.dumps(value, indent=1, ensure_ascii=False)):
            assert loads(text) == value
            assert loads(text.encode()) == value
            assert nesting_depth(text) == _depth(value)


@pytest.mark.parametrize(
    "text",
    [
        "[" * DEEP,
        "[" * DEEP + "]" * DEEP,
        '{"a":' * DEEP + "1" + "}" * DEEP,
        "[" * DEEP + "}",
        ("[" * (MAX_DEPTH + 1)) + ("]" * (MAX_DEPTH + 1)),
    ],
)
def test_deep_nesting_is_refused_before_parsing(text: str) -> None:
    assert _code(text) == TOO_DEEP
    assert _code(text.encode()) == TOO_DEEP


def test_depth_limit_is_exact_and_strings_do_not_count() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert nesting_depth(ok) == MAX_DEPTH
    assert loads(ok) is not None
    inside = json.dumps(["[" * DEEP, "{" * DEEP, '"\\' * 10])
    assert loads(inside)[0] == "[" * DEEP
    assert _code("[[[1]]]", max_depth=2) == TOO_DEEP
    assert loads("[[1]]", max_depth=2) == [[1]]


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"a": 1, "b": {"c": 1, "c": 1}}',
        '[{"x": [], "x": []}]',
    ],
)
def test_duplicate_keys_are_refused(text: str) -> None:
    assert _code(text) == DUPLICATE_KEY


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '"\\' * 200_000,  # unterminated strings: linear, never quadratic
        '"' + "a" * 1_000_000,
        "NaN",
        "[Infinity]",
        "[-Infinity]",
        "[1e999]",
        "[" + "7" * 5000 + "]",  # CPython refuses ints of more than 4,300 digits
        b"\xff[]",
        b"\xef\xbb\xbf[]",  # a byte-order mark
        '["a"] ["b"]',
    ],
)
def test_invalid_text_is_one_error(text: str | bytes) -> None:
    assert _code(text) == INVALID


def test_floats_can_be_refused() -> None:
    assert loads("[1.5, 2]") == [1.5, 2]
    assert _code("[1.5]", floats=False) == INVALID
    assert loads("[15, 2]", floats=False) == [15, 2]


def test_no_crash_even_with_a_raised_recursion_limit() -> None:
    """The depth check runs before json.loads: a process whose recursion limit is
    100,000 (py_ecc's) does not overflow its C stack on deep input."""
    code = (
        "import sys\n"
        "from zk import strict_json\n"
        "sys.setrecursionlimit(100_000)\n"
        "for text in ('[' * 200_000, '{\"a\":' * 200_000):\n"
        "    try:\n"
        "        strict_json.loads(text)\n"
        "    except strict_json.JsonInputError as exc:\n"
        "        print(exc.code)\n"
    )
    out = run_python(code)
    assert out.stdout.split() == [TOO_DEEP, TOO_DEEP]


def test_importing_py_ecc_through_zk_keeps_a_sane_recursion_limit() -> None:
    """py_ecc raises the limit to 100,000 on import; zk (and so registry) puts it back."""
    code = (
        "import sys\n"
        "before = sys.getrecursionlimit()\n"
        "import registry.cli, eth_account, py_ecc.optimized_bn128, zk.groth16.reference\n"
        "print(before, sys.getrecursionlimit())\n"
    )
    out = run_python(code)
    before, after = out.stdout.split()
    assert int(after) == int(before) < 100_000
    assert strict_json.MAX_DEPTH < int(after)


def test_importing_zk_after_py_ecc_puts_the_recursion_limit_back() -> None:
    """py_ecc imported first (the limit at 100,000): importing zk puts it back."""
    code = "import sys, py_ecc\nraised = sys.getrecursionlimit()\nimport zk\nprint(raised, sys.getrecursionlimit())\n"
    raised, after = map(int, run_python(code).stdout.split())
    assert raised >= 100_000 and strict_json.MAX_DEPTH < after < 100_000
