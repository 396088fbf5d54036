"""zk.witness: the ceremony .wasm witness generator run in-process with wasmtime."""

from __future__ import annotations

import base64
import struct
import threading
from typing import Any

import pytest

from tests.jsbridge import run_js
from tests.support.node import needs_node
from tests.zk.groth16.helpers import VECTORS, circuit_inputs, public_signals, vector
from zk.field import R, FieldError
from zk.witness import (
    WitnessCalculator,
    WitnessError,
    fnv1a_64,
    parse_wtns,
    semaphore_calculator,
    wtns_bytes,
)

# Baby Jubjub subgroup order: the circuit asserts secret < L.
L = 2736030358979909402780800718157159386076813972158567259200215660948447373041


def test_fnv1a_64_known_values() -> None:
    # FNV-1a 64-bit reference values (draft-eastlake-fnv test vectors).
    assert fnv1a_64("") == (0xCBF29CE4, 0x84222325)
    assert fnv1a_64("a") == (0xAF63DC4C, 0x8601EC8C)
    assert fnv1a_64("foobar") == (0x85944171, 0xF73967E8)


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_public_signals_match_the_js_sdk(vec: dict[str, Any]) -> None:
    depth = vec["proof"]["merkleTreeDepth"]
    calc = semaphore_calculator(depth)
    values = calc.calculate(circuit_inputs(vec))
    assert len(values) == calc.witness_size
    assert values[0] == 1
    # Witness layout: 1, outputs (root, nullifier), public inputs (message, scope).
    assert values[1:5] == public_signals(vec)
    assert all(0 <= v < R for v in values)


@needs_node
def test_wtns_is_byte_identical_to_circom_runtime() -> None:
    vec = vector(2)
    ours = semaphore_calculator(2).calculate_wtns(circuit_inputs(vec))
    theirs = run_js("proof_witness.mjs", {"depth": 2, "inputs": vec["circuitInputs"]})
    assert ours == base64.b64decode(theirs["wtns"])


@needs_node
def test_failed_assertion_raises_like_circom_runtime() -> None:
    inputs = circuit_inputs(vector(1))
    inputs["secret"] = L  # the circuit requires secret < L
    with pytest.raises(WitnessError, match="assert failed"):
        semaphore_calculator(1).calculate_wtns(inputs)
    js = run_js("proof_witness.mjs", {"depth": 1, "inputs": {**vector(1)["circuitInputs"], "secret": str(L)}})
    assert "Assert Failed" in js["error"]


def test_index_bits_beyond_depth_fail() -> None:
    inputs = circuit_inputs(vector(2))
    inputs["merkleProofIndex"] = 4  # needs 3 bits in a depth-2 circuit
    with pytest.raises(WitnessError, match="assert failed"):
        semaphore_calculator(2).calculate(inputs)


def test_calculator_recovers_after_a_failure() -> None:
    calc = semaphore_calculator(1)
    good = circuit_inputs(vector(1))
    with pytest.raises(WitnessError):
        calc.calculate({**good, "secret": L + 1})
    assert calc.calculate(good)[1:5] == public_signals(vector(1))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"nope": 1}, "not an input signal"),
        ({"merkleProofSiblings": [1, 2, 3]}, "needs 2 values"),
        ({"merkleProofSiblings": 5}, "needs 2 values"),
        ({"scope": "1"}, "integer"),
        ({"scope": None}, "integer"),
        ({"sécret": 1}, "invalid input signal name"),
    ],
)
def test_bad_inputs(change: dict[str, Any], error: str) -> None:
    inputs = {**circuit_inputs(vector(2)), **change}
    with pytest.raises(WitnessError, match=error):
        semaphore_calculator(2).calculate(inputs)


def test_missing_input() -> None:
    inputs = circuit_inputs(vector(2))
    del inputs["message"]
    with pytest.raises(WitnessError, match="input values were given"):
        semaphore_calculator(2).calculate(inputs)


@pytest.mark.parametrize("value", [R, R + 5, -1, True])
def test_values_outside_the_field_are_rejected_not_reduced(value: int) -> None:
    inputs = {**circuit_inputs(vector(2)), "message": value}
    with pytest.raises(FieldError):
        semaphore_calculator(2).calculate(inputs)


def test_wtns_format_roundtrip_and_strictness() -> None:
    values = [1, 2, R - 1]
    raw = b"".join(v.to_bytes(32, "little") for v in values)
    blob = wtns_bytes(raw, 3)
    assert blob[:4] == b"wtns" and struct.unpack_from("<II", blob, 4) == (2, 2)
    assert parse_wtns(blob) == values
    with pytest.raises(ValueError):
        wtns_bytes(raw, 2)
    with pytest.raises(ValueError):
        parse_wtns(blob[:-1])
    too_big = bytearray(blob)
    too_big[-32:] = R.to_bytes(32, "little")
    with pytest.raises(ValueError):
        parse_wtns(bytes(too_big))
    bad_prime = bytearray(blob)
    bad_prime[28] ^= 1
    with pytest.raises(ValueError):
        parse_wtns(bytes(bad_prime))


def test_not_a_witness_generator() -> None:
    with pytest.raises(WitnessError, match="invalid"):
        WitnessCalculator(b"\0asm garbage")
    with pytest.raises(WitnessError, match="not a circom 2 witness generator"):
        WitnessCalculator(b"\0asm\x01\0\0\0")  # an empty, valid module


def test_depth_checked() -> None:
    with pytest.raises(ValueError):
        semaphore_calculator(0)
    with pytest.raises(ValueError):
        semaphore_calculator(33)


def test_concurrent_calculations_agree() -> None:
    calc = semaphore_calculator(2)
    inputs = circuit_inputs(vector(2))
    expected = calc.calculate_wtns(inputs)
    results: list[bytes] = []

    def work() -> None:
        for _ in range(3):
            results.append(calc.calculate_wtns(inputs))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 9


def test_a_transient_refusal_of_the_instance_memory_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS refusing the instance's memfd for a moment (it happened once on a user's
    machine: "cannot add seals to the memfd") cannot be produced on demand: injected here.
    One refusal is retried; refusals on every attempt are a WitnessError that says so."""
    import wasmtime

    import zk.witness as witness

    calc = semaphore_calculator(1)
    good = circuit_inputs(vector(1))
    real = wasmtime.Instance
    refusals = [1]

    def flaky(*args: Any) -> Any:
        if refusals[0] > 0:
            refusals[0] -= 1
            raise wasmtime.WasmtimeError("cannot add seals to the memfd")
        return real(*args)

    monkeypatch.setattr(witness.wasmtime, "Instance", flaky)
    assert calc.calculate(good)[1:5] == public_signals(vector(1))
    assert refusals == [0]
    refusals[0] = witness.INSTANTIATE_ATTEMPTS
    with pytest.raises(WitnessError, match="the system refused its memory; try again"):
        calc.calculate(good)
