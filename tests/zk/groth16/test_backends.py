"""The Groth16Backend contract, one suite run over every backend (``reference``: py_ecc,
``fast``: groth16py), as py_ecc runs one test suite over all its curve implementations.

What only one backend has (the fast backend's traps and prover, the reference
verifier's key parsing) is tested in test_fast.py and test_reference.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.zk.groth16.helpers import VECTORS, circuit_inputs, public_signals, vector, with_b_off_subgroup
from zk.field import Q, R
from zk.groth16 import Groth16Backend, get_backend
from zk.groth16.encoding import Proof
from zk.groth16.fast import default_backend
from zk.witness import semaphore_calculator

FAST = default_backend()


@pytest.fixture(params=["reference", "fast"])
def backend(request: pytest.FixtureRequest) -> Groth16Backend:
    return get_backend(request.param)


def js_proof(vec: dict[str, Any]) -> Proof:
    return Proof.from_decimal_points(vec["proof"]["points"])


def test_backend_protocol(backend: Groth16Backend) -> None:
    assert isinstance(backend, Groth16Backend)
    assert get_backend(backend.name) is backend


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_js_proofs_verify(backend: Groth16Backend, vec: dict[str, Any]) -> None:
    assert backend.verify(vec["proof"]["merkleTreeDepth"], js_proof(vec), public_signals(vec)) is True


def test_tampered_signals_and_keys_fail(backend: Groth16Backend) -> None:
    vec = vector(2)
    proof, signals = js_proof(vec), public_signals(vec)
    for i in range(4):  # i = 1: another nullifier
        changed = list(signals)
        changed[i] = (changed[i] + 1) % R
        assert backend.verify(2, proof, changed) is False
    assert not backend.verify(3, proof, signals)  # another depth's key
    a0, a1 = proof.a
    assert not backend.verify(2, Proof((a0, Q - a1), proof.b, proof.c), signals)  # -A
    other = js_proof(vector(1))
    assert not backend.verify(2, Proof(other.a, proof.b, proof.c), signals)


def test_mixed_proof_fails(backend: Groth16Backend) -> None:
    # A from one valid depth-1 proof, B and C from another: every point valid, the proof not.
    first, second = [v for v in VECTORS if v["proof"]["merkleTreeDepth"] == 1][:2]
    p1, p2 = js_proof(first), js_proof(second)
    assert backend.verify(1, Proof(p1.a, p2.b, p2.c), public_signals(second)) is False


@pytest.mark.parametrize(
    "signals",
    [[], [1, 2, 3], [1, 2, 3, 4, 5], [R, 1, 2, 3], [-1, 1, 2, 3], [True, 1, 2, 3], ["1", 2, 3, 4], "1234"],
)
def test_bad_public_signals_return_false(backend: Groth16Backend, signals: Any) -> None:
    assert backend.verify(2, js_proof(vector(2)), signals) is False


def test_signal_reduced_mod_r_is_not_accepted(backend: Groth16Backend) -> None:
    vec = vector(2)
    signals = public_signals(vec)
    signals[3] += R  # the same value mod r
    assert backend.verify(2, js_proof(vec), signals) is False


def test_b_off_the_subgroup_returns_false(backend: Groth16Backend) -> None:
    # A Proof built without validation, with B off the r-subgroup: refused, never an
    # exception (groth16py raises EncodingError on it: test_fast.py).
    vec = vector(2)
    assert backend.verify(2, with_b_off_subgroup(js_proof(vec)), public_signals(vec)) is False


def test_not_a_proof_returns_false(backend: Groth16Backend) -> None:
    vec = vector(2)
    assert backend.verify(2, "not a proof", public_signals(vec)) is False  # type: ignore[arg-type]


def test_depth_outside_the_ceremony_raises(backend: Groth16Backend) -> None:
    vec = vector(2)
    for depth in (0, 33):
        with pytest.raises(ValueError):
            backend.verify(depth, js_proof(vec), public_signals(vec))


def test_python_made_proof_verifies(backend: Groth16Backend) -> None:
    vec = vector(1)
    wtns = semaphore_calculator(1).calculate_wtns(circuit_inputs(vec))
    proof, signals = FAST.prove(1, wtns)
    assert backend.verify(1, proof, signals) is True
