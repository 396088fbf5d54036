"""The admission scope layout (zk/admission_scope.py, docs/admission.md; LZA2): known
answers (also from tests/js/gen_scope_vectors.mjs), round trips and refusals."""

import pytest
from hypothesis import given, strategies as st

from tests.support.vectors import load_vectors
from tests.zk.scope_refusals import assert_refused_as_malformed
from zk.admission_scope import AdmissionScope, AdmissionScopeError, AdmissionScopeVersionError, decode_admission_scope
from zk.hashing import semaphore_hash
from zk.relay_scope import RegistryRef, RelayScope


HOME = RegistryRef(31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")
VECTORS = load_vectors("scopes.json")


@given(st.integers(0, 2**96 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_round_trip(tag: int, group_id: int, round_: int) -> None:
    scope = AdmissionScope(tag, group_id, round_)
    value = scope.encode()
    assert 0 <= value < 2**256
    assert decode_admission_scope(value) == scope


@pytest.mark.parametrize(
    "group_id,round_,expected",
    [
        (7, 0x0102030405060708, "4c5a4132" "73111281a8c62caa0d21f215" "0000000000000007" "0102030405060708"),
        (0, 0, "4c5a4132" "73111281a8c62caa0d21f215" "0000000000000000" "0000000000000000"),
        (2**64 - 1, 1, "4c5a4132" "73111281a8c62caa0d21f215" "ffffffffffffffff" "0000000000000001"),
    ],
)
def test_layout_known_answers(group_id: int, round_: int, expected: str) -> None:
    value = AdmissionScope.of(HOME, group_id, round_).encode()
    assert value.to_bytes(32, "big").hex() == expected
    # The decimal form a client puts in the proof's `scope` (docs/admission.md's example).
    assert str(value) == str(int(expected, 16))


@pytest.mark.parametrize("case", VECTORS["admission_scopes"], ids=lambda c: f"{c['chain_id'][:8]}-{c['group_id']}")
def test_vectors_from_js(case: dict[str, str]) -> None:
    """tests/js/gen_scope_vectors.mjs against zk.admission_scope and zk.hashing."""
    home = RegistryRef(int(case["chain_id"]), case["registry"])
    value = AdmissionScope.of(home, int(case["group_id"]), int(case["round"])).encode()
    assert value == int(case["scope"]) == int(case["scope_hex"], 16)
    assert semaphore_hash(value) == int(case["circuit_scope"])


@pytest.mark.parametrize(
    "old",
    [
        int("4c5a4131" "0000000000000007" "0102030405060708" "000000000000000000000000", 16),  # the LZA1 example
        int.from_bytes(b"LZA1" + bytes(27) + b"\x01", "big"),  # even one a v1 parser refused
    ],
)
def test_version_1_is_refused_by_its_version(old: int) -> None:
    with pytest.raises(AdmissionScopeVersionError):
        decode_admission_scope(old)


@pytest.mark.parametrize(
    "bad",
    [
        0,
        -1,
        2**256,
        int.from_bytes(b"LZA3" + bytes(28), "big"),
        RelayScope.of(HOME, 7, 1, 0).encode(),  # a send authorization's scope is never an admission scope
    ],
)
def test_decode_rejects(bad: int) -> None:
    assert_refused_as_malformed(decode_admission_scope, bad, AdmissionScopeError, AdmissionScopeVersionError)


@pytest.mark.parametrize(
    "field,value",
    [("registry_tag", 2**96), ("group_id", 2**64), ("group_id", -1), ("round", 2**64), ("round", True)],
)
def test_encode_rejects_out_of_range(field: str, value: int) -> None:
    args = {"registry_tag": 0, "group_id": 0, "round": 0, field: value}
    with pytest.raises(AdmissionScopeError):
        AdmissionScope(**args).encode()
