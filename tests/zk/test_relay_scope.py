from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from zk.relay_scope import (
    RelayScope,
    ScopeError,
    acceptable_epochs,
    blob_message,
    check_epoch_parameters,
    decode_scope,
    epoch_at,
    worst_case_sends,
)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
def test_scope_round_trip(group_id: int, epoch: int, slot: int) -> None:
    scope = RelayScope(group_id, epoch, slot)
    value = scope.encode()
    assert 0 <= value < 2**256
    assert decode_scope(value) == scope


def test_scope_layout_known_answer() -> None:
    value = RelayScope(group_id=7, epoch=0x0102030405060708, slot=3).encode()
    assert value.to_bytes(32, "big").hex() == (
        "4c5a4531" "0000000000000007" "0102030405060708" "00000003" "0000000000000000"
    )


@pytest.mark.parametrize(
    "bad",
    [0, 1, -1, 2**256, int.from_bytes(b"LZE2" + bytes(28), "big"), int.from_bytes(b"LZE1" + bytes(27) + b"\x01", "big")],
)
def test_decode_rejects(bad: int) -> None:
    with pytest.raises(ScopeError):
        decode_scope(bad)


@pytest.mark.parametrize("field,value", [("group_id", 2**64), ("epoch", -1), ("slot", 2**32)])
def test_encode_rejects_out_of_range(field: str, value: int) -> None:
    args = {"group_id": 0, "epoch": 0, "slot": 0, field: value}
    with pytest.raises(ScopeError):
        RelayScope(**args).encode()


def test_epochs_and_skew() -> None:
    assert epoch_at(3600 * 5 + 10, 3600) == 5
    assert acceptable_epochs(3600 * 5 + 1800, 3600, 30) == {5}
    assert acceptable_epochs(3600 * 5 + 10, 3600, 30) == {4, 5}
    assert acceptable_epochs(3600 * 6 - 10, 3600, 30) == {5, 6}


def test_blob_message() -> None:
    assert blob_message(bytes(31) + b"\x05") == 5
    with pytest.raises(ValueError):
        blob_message(b"short")


@pytest.mark.parametrize("epoch_length, skew", [(600, 300), (600, 600), (600, 1000), (1, 1), (10, 5)])
def test_skew_of_half_an_epoch_or_more_is_refused(epoch_length: int, skew: int) -> None:
    with pytest.raises(ValueError, match="less than epoch_length / 2"):
        check_epoch_parameters(epoch_length, skew)
    with pytest.raises(ValueError):
        acceptable_epochs(epoch_length * 10, epoch_length, skew)  # never three epochs at once
    check_epoch_parameters(epoch_length, (epoch_length - 1) // 2)


@pytest.mark.parametrize("epoch_length, skew", [(600, 0), (600, True), (0, 0), (600, -1), (600.0, 30)])
def test_epoch_parameters_must_be_whole_seconds(epoch_length: object, skew: object) -> None:
    if (epoch_length, skew) == (600, 0):
        check_epoch_parameters(600, 0)
        return
    with pytest.raises(ValueError):
        check_epoch_parameters(epoch_length, skew)  # type: ignore[arg-type]


def _epochs_within(a: Fraction, b: Fraction, epoch_length: int, skew: int) -> set[int]:
    """Every epoch accepted at some instant of [a, b], from acceptable_epochs itself: the
    accepted set only changes at e*E - skew, e*E and e*E + skew, so it is enough to look
    at those points in [a, b], just after them, and at a and b."""
    points = {a, b}
    first, last = int(a // epoch_length) - 1, int(b // epoch_length) + 2
    for e in range(first, last + 1):
        for edge in (e * epoch_length - skew, e * epoch_length, e * epoch_length + skew):
            for t in (Fraction(edge), edge + Fraction(1, 1000)):
                if a <= t <= b:
                    points.add(t)
    found: set[int] = set()
    for t in points:
        found |= acceptable_epochs(t, epoch_length, skew)  # type: ignore[arg-type]
    return found


@pytest.mark.parametrize("epoch_length, skew", [(10, 0), (10, 4), (7, 3)])
def test_worst_case_sends_is_exact(epoch_length: int, skew: int) -> None:
    """worst_case_sends (docs/authorization.md) against acceptable_epochs, exhaustively on a
    grid: the largest number of epochs met by a window of each length, over every start."""
    limit = 3
    step = Fraction(1, 2)  # the bounds' breakpoints are whole seconds: look at and between them
    for w2 in range(0, 2 * 3 * epoch_length):
        window = w2 * step
        most = 0
        for s2 in range(0, 2 * epoch_length + 1):
            a = 5 * epoch_length + s2 * step - step / 2
            for start in (a, a + step / 2):
                most = max(most, len(_epochs_within(start, start + window, epoch_length, skew)))
        assert most * limit == worst_case_sends(window, epoch_length, skew, limit), (window, most)


def test_worst_case_sends_with_the_defaults() -> None:
    # E = 600 s, skew = 30 s, limit L: 2L at one instant, 3L within any window longer than
    # 540 s, (k + 1)L within any k epochs plus a moment; L per epoch in the long run.
    assert worst_case_sends(0, 600, 30, 100) == 200
    assert worst_case_sends(540, 600, 30, 100) == 200
    assert worst_case_sends(540.001, 600, 30, 100) == 300
    assert worst_case_sends(600, 600, 30, 100) == 300
    assert worst_case_sends(1140, 600, 30, 100) == 300
    assert worst_case_sends(1141, 600, 30, 100) == 400
    assert worst_case_sends(3600, 600, 30, 100) == 800
    assert worst_case_sends(0.001, 600, 0, 100) == 200  # no skew: still 2L around a boundary
