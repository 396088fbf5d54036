"""registry/_utils: the one back-off, the one checked integer and the log policy helper."""

from __future__ import annotations

import pytest

from registry._utils.backoff import Backoff, backoff_delay
from registry._utils.integers import MAX_GROUP_ID, UINT64_MAX, bounded_int, json_integer
from registry._utils.logs import exc_type


def test_backoff_doubles_from_base_up_to_the_cap_and_starts_over() -> None:
    assert [backoff_delay(n, 0.5, 3.0) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(10**6, 1.0, 60.0) == 60.0  # no overflow however long it failed
    b = Backoff(0.25, 1.0)
    assert [b.failed() for _ in range(4)] == [0.25, 0.5, 1.0, 1.0]
    b.succeeded()
    assert b.failed() == 0.25


def test_backoff_jitter_stays_within_a_quarter() -> None:
    assert backoff_delay(3, 1.0, 60.0, jitter=True, rand=lambda: 0.0) == 3.0
    assert backoff_delay(3, 1.0, 60.0, jitter=True, rand=lambda: 0.999999) == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize(
    "value,expected",
    [(0, 0), (MAX_GROUP_ID, MAX_GROUP_ID), (MAX_GROUP_ID + 1, None), (-1, None), (True, None), (1.0, None), ("1", None)],
)
def test_bounded_int_at_the_group_id_edges(value: object, expected: int | None) -> None:
    assert bounded_int(value, 0, MAX_GROUP_ID) == expected


def test_bounds_and_json_integers() -> None:
    assert MAX_GROUP_ID == 2**53 - 1 and UINT64_MAX == 2**64 - 1  # docs/api.md; the contract's uint64
    assert json_integer(5.0) == 5 and json_integer(5) == 5
    assert json_integer(5.5) is None and json_integer(True) is None and json_integer("5") is None


def test_exc_type_is_the_type_name_only() -> None:
    assert exc_type(ValueError("commitment 1234")) == "ValueError"
