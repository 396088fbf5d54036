"""A check the tests of both scope layouts (relay and admission) make."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def assert_refused_as_malformed(
    decode: Callable[[int], object], value: int, error: type[Exception], version_error: type[Exception]
) -> None:
    """``decode(value)`` raises ``error``, and not its subclass ``version_error`` (kept for
    a scope of an older layout version): ``value`` is malformed, not merely old."""
    with pytest.raises(error) as caught:
        decode(value)
    assert not isinstance(caught.value, version_error)
