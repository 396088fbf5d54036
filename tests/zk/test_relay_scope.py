import pytest
from hypothesis import given, strategies as st

from zk.relay_scope import (
    RelayScope,
    ScopeError,
    acceptable_epochs,
    blob_message,
    decode_scope,
    epoch_at,
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
