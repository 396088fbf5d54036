"""The admission scope layout (zk/admission_scope.py, docs/admission.md): known answers,
round trips and refusals."""

import pytest
from hypothesis import given, strategies as st

from zk.admission_scope import AdmissionScope, AdmissionScopeError, decode_admission_scope
from zk.relay_scope import RelayScope


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_round_trip(group_id: int, round_: int) -> None:
    scope = AdmissionScope(group_id, round_)
    value = scope.encode()
    assert 0 <= value < 2**256
    assert decode_admission_scope(value) == scope


@pytest.mark.parametrize(
    "group_id,round_,expected",
    [
        (7, 0x0102030405060708, "4c5a4131" "0000000000000007" "0102030405060708" "000000000000000000000000"),
        (0, 0, "4c5a4131" "0000000000000000" "0000000000000000" "000000000000000000000000"),
        (2**64 - 1, 1, "4c5a4131" "ffffffffffffffff" "0000000000000001" "000000000000000000000000"),
    ],
)
def test_layout_known_answers(group_id: int, round_: int, expected: str) -> None:
    value = AdmissionScope(group_id, round_).encode()
    assert value.to_bytes(32, "big").hex() == expected
    # The decimal form a client puts in the proof's `scope` (docs/admission.md's example).
    assert str(value) == str(int(expected, 16))


def test_known_decimal_of_the_docs_example() -> None:
    assert AdmissionScope(7, 0x0102030405060708).encode() == int(
        "4c5a41310000000000000007010203040506070800000000" "0000000000000000", 16
    )


@pytest.mark.parametrize(
    "bad",
    [
        0,
        -1,
        2**256,
        int.from_bytes(b"LZA2" + bytes(28), "big"),
        int.from_bytes(b"LZA1" + bytes(27) + b"\x01", "big"),  # reserved bytes set
        RelayScope(7, 1, 0).encode(),  # a send authorization's scope is never an admission scope
    ],
)
def test_decode_rejects(bad: int) -> None:
    with pytest.raises(AdmissionScopeError):
        decode_admission_scope(bad)


@pytest.mark.parametrize("field,value", [("group_id", 2**64), ("group_id", -1), ("round", 2**64), ("round", True)])
def test_encode_rejects_out_of_range(field: str, value: int) -> None:
    args = {"group_id": 0, "round": 0, field: value}
    with pytest.raises(AdmissionScopeError):
        AdmissionScope(**args).encode()
