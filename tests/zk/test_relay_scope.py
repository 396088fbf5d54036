from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from tests.support.vectors import load_vectors
from tests.zk.scope_refusals import assert_refused_as_malformed
from zk.hashing import semaphore_hash
from zk.relay_scope import (
    RegistryRef,
    RelayScope,
    ScopeError,
    ScopeVersionError,
    acceptable_epochs,
    blob_message,
    check_epoch_parameters,
    decode_scope,
    epoch_at,
    worst_case_sends,
)


HOME = RegistryRef(31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")
VECTORS = load_vectors("scopes.json")


@given(st.integers(0, 2**96 - 1), st.integers(0, 2**56 - 1), st.integers(0, 2**40 - 1), st.integers(0, 2**32 - 1))
def test_scope_round_trip(tag: int, group_id: int, epoch: int, slot: int) -> None:
    scope = RelayScope(tag, group_id, epoch, slot)
    value = scope.encode()
    assert 0 <= value < 2**256
    assert decode_scope(value) == scope


def test_scope_layout_known_answer() -> None:
    """The example of docs/authorization.md, byte by byte."""
    value = RelayScope.of(HOME, group_id=7, epoch=0x0102030405, slot=3).encode()
    assert value.to_bytes(32, "big").hex() == (
        "4c5a4532" "73111281a8c62caa0d21f215" "00000000000007" "0102030405" "00000003"
    )


@pytest.mark.parametrize("case", VECTORS["relay_scopes"], ids=lambda c: f"{c['chain_id'][:8]}-{c['group_id']}-{c['slot']}")
def test_scope_vectors_from_js(case: dict[str, str]) -> None:
    """tests/js/gen_scope_vectors.mjs (ethers' solidityPackedKeccak256, BigInt shifts and
    @semaphore-protocol/proof's own hash) against zk.relay_scope and zk.hashing."""
    home = RegistryRef(int(case["chain_id"]), case["registry"])
    scope = RelayScope.of(home, int(case["group_id"]), int(case["epoch"]), int(case["slot"]))
    value = scope.encode()
    assert value == int(case["scope"]) == int(case["scope_hex"], 16)
    assert semaphore_hash(value) == int(case["circuit_scope"])
    assert decode_scope(value) == scope


LZE1_EXAMPLE = int("4c5a4531" "0000000000000007" "0102030405060708" "00000003" "0000000000000000", 16)


@pytest.mark.parametrize("old", [LZE1_EXAMPLE, int.from_bytes(b"LZE1" + bytes(28), "big"), int.from_bytes(b"LZE1" + b"\xff" * 28, "big")])
def test_version_1_is_refused_by_its_version(old: int) -> None:
    """An LZE1 scope (docs/authorization.md "Migration from LZE1") is never read as LZE2:
    it raises ScopeVersionError (``scope_version_unsupported``), a ScopeError."""
    with pytest.raises(ScopeVersionError):
        decode_scope(old)


@pytest.mark.parametrize(
    "bad",
    [0, 1, -1, 2**256, 2**256 + LZE1_EXAMPLE, True, int.from_bytes(b"LZE3" + bytes(28), "big"), int.from_bytes(b"LZA2" + bytes(28), "big")],
)
def test_decode_rejects(bad: int) -> None:
    assert_refused_as_malformed(decode_scope, bad, ScopeError, ScopeVersionError)


@pytest.mark.parametrize(
    "field,value",
    [("registry_tag", 2**96), ("group_id", 2**56), ("epoch", -1), ("epoch", 2**40), ("slot", 2**32), ("slot", True)],
)
def test_encode_rejects_out_of_range(field: str, value: int) -> None:
    """Out-of-range values are refused, never truncated or reduced."""
    args = {"registry_tag": 0, "group_id": 0, "epoch": 0, "slot": 0, field: value}
    with pytest.raises(ScopeError):
        RelayScope(**args).encode()


def test_the_scope_binds_the_deployment() -> None:
    """Same group, epoch and slot at two deployments (another chain id, or another
    contract on the same chain): different scopes, so different nullifiers and a
    ``wrong_registry`` refusal at the other one."""
    other_chain = RegistryRef(31338, HOME.contract)
    other_contract = RegistryRef(HOME.chain_id, "0x" + "e7" * 20)
    scopes = {RelayScope.of(r, 0, 100, 0).encode() for r in (HOME, other_chain, other_contract)}
    assert len(scopes) == 3
    assert {decode_scope(s).registry_tag for s in scopes} == {HOME.tag, other_chain.tag, other_contract.tag}


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
