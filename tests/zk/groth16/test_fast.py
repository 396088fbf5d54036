"""zk.groth16.fast: groth16py on the ceremony keys, with each of its traps closed."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import groth16py
import pytest

from tests.zk.groth16.helpers import VECTORS, circuit_inputs, public_signals, vector, with_b_off_subgroup
from zk.artifacts import ArtifactError, load_artifacts
from zk.field import R
from zk.groth16 import Groth16Error, get_backend
from zk.groth16.encoding import Proof, ProofEncodingError
from zk.groth16.fast import FastBackend, bytes_as_path, check_wtns, default_backend, guarded, is_panic, zkey_shape
from zk.witness import semaphore_calculator

FAST = default_backend()
INSTALLED = Path(__file__).resolve().parents[3] / "node_modules" / "@zk-kit" / "semaphore-artifacts"


def js_proof(vec: dict[str, Any]) -> Proof:
    return Proof.from_decimal_points(vec["proof"]["points"])


def test_fast_is_the_default_backend() -> None:
    assert get_backend() is FAST
    with pytest.raises(ValueError):
        get_backend("snarkjs")


def test_groth16py_errors_become_false() -> None:
    # A Proof built without validation, with B off the r-subgroup: groth16py raises
    # EncodingError here, which verify must turn into False (that it does, and returns
    # False for what is not a proof, is checked for both backends in test_backends.py).
    vec = vector(2)
    rogue = with_b_off_subgroup(js_proof(vec))
    verifier, _ = FAST.verifier(2)
    with pytest.raises(groth16py.EncodingError):
        verifier.verify(rogue.to_bytes(), public_signals(vec))


def test_verify_snarkjs_trap_is_avoided() -> None:
    """groth16py's verify_snarkjs accepts a non-canonical decimal; our parser does not."""
    vec = vector(2)
    proof = json.loads(json.dumps(vec["snarkjsProof"]))
    proof["pi_a"][0] = "0" + proof["pi_a"][0]
    verifier, _ = FAST.verifier(2)
    assert verifier.verify_snarkjs(json.dumps(proof), json.dumps(vec["publicSignals"])) is True  # the trap
    with pytest.raises(ProofEncodingError):
        Proof.from_snarkjs(proof)


def test_verify_many_keeps_order() -> None:
    items: list[tuple[int, Proof, list[int]]] = []
    expected = []
    for vec in VECTORS[:4]:
        depth, proof, signals = vec["proof"]["merkleTreeDepth"], js_proof(vec), public_signals(vec)
        items += [(depth, proof, signals), (depth, proof, [signals[0], signals[1], signals[2], (signals[3] + 1) % R])]
        expected += [True, False]
    items = items * 3
    expected = expected * 3
    assert FAST.verify_many(items) == expected
    assert FAST.verify_many(items, max_workers=1) == expected
    assert FAST.verify_many([]) == []
    with pytest.raises(ValueError):
        FAST.verify_many([(0, items[0][1], items[0][2])])


def test_prove_from_our_witness() -> None:
    vec = vector(2)
    wtns = semaphore_calculator(2).calculate_wtns(circuit_inputs(vec))
    proof, signals = FAST.prove(2, wtns)
    assert list(signals) == public_signals(vec)
    assert FAST.verify(2, proof, signals)
    assert proof != js_proof(vec)  # randomised, unlike the statement
    again, _ = FAST.prove(2, wtns)
    assert again != proof


def test_constraint_violating_witness_is_refused() -> None:
    """groth16py proves an unsatisfying witness without complaint; prove() must raise."""
    vec = vector(2)
    wtns = bytearray(semaphore_calculator(2).calculate_wtns(circuit_inputs(vec)))
    n_vars = FAST.proving_key(2)[1]
    position = 76 + 32 * (n_vars - 1)
    wtns[position] ^= 1  # an internal signal, still a field element
    pk, _ = FAST.proving_key(2)
    with bytes_as_path(bytes(wtns), "bad.wtns") as path:
        blob = groth16py.prove_wtns(pk, path)  # the trap: a proof comes out
    assert not FAST.verify(2, Proof.from_bytes(blob), public_signals(vec))
    with pytest.raises(Groth16Error, match="does not verify"):
        FAST.prove(2, bytes(wtns))


def test_malformed_wtns_never_reaches_groth16py() -> None:
    """A bogus field size makes groth16py try a huge allocation and abort the process."""
    good = semaphore_calculator(1).calculate_wtns(circuit_inputs(vector(1)))
    n_vars = FAST.proving_key(1)[1]
    assert check_wtns(good, n_vars)[0] == 1
    small_n8 = bytearray(good)
    small_n8[24] = 16
    wrong_prime = bytearray(good)
    wrong_prime[28] ^= 1
    wrong_count = bytearray(good)
    struct.pack_into("<I", wrong_count, 60, n_vars - 1)
    too_big = bytearray(good)
    too_big[-32:] = R.to_bytes(32, "little")
    for bad in (small_n8, wrong_prime, wrong_count, too_big, good[:-1], good + b"\0", b""):
        with pytest.raises(Groth16Error):
            FAST.prove(1, bytes(bad))
    deeper = semaphore_calculator(2).calculate_wtns(circuit_inputs(vector(2)))
    with pytest.raises(Groth16Error, match="values"):
        FAST.prove(1, deeper)


def test_panics_are_caught_narrowly() -> None:
    # A witness for another circuit makes groth16py panic (index out of bounds).
    small = semaphore_calculator(1).calculate_wtns(circuit_inputs(vector(1)))
    pk, _ = FAST.proving_key(2)
    with bytes_as_path(small, "small.wtns") as path:
        with pytest.raises(BaseException) as info:
            groth16py.prove_wtns(pk, path)
        assert is_panic(info.value) and not isinstance(info.value, Exception)
        with pytest.raises(Groth16Error, match="panicked"):
            guarded(lambda: groth16py.prove_wtns(pk, path), "proving")

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guarded(interrupted, "anything")
    assert not is_panic(KeyboardInterrupt())
    with pytest.raises(Groth16Error):
        guarded(lambda: groth16py.VerifyingKey.from_snarkjs("{}"), "loading")


def test_zkey_is_imported_only_after_the_hash_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for suffix in (".wasm", ".zkey", ".json"):
        shutil.copyfile(INSTALLED / f"semaphore-1{suffix}", tmp_path / f"semaphore-1{suffix}")
    zkey = tmp_path / "semaphore-1.zkey"
    data = bytearray(zkey.read_bytes())
    data[-100] ^= 0xFF  # a corrupted point: groth16py would import it silently
    calls: list[str] = []
    real_import = groth16py.import_zkey
    monkeypatch.setattr(groth16py, "import_zkey", lambda path: calls.append(path) or real_import(path))
    backend = FastBackend(tmp_path)
    assert backend.proving_key(1)[1] == 1761  # genuine file: imported (from a memfd)
    assert len(calls) == 1 and calls[0].startswith("/proc/self/fd/")
    zkey.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256"):
        FastBackend(tmp_path).proving_key(1)
    assert len(calls) == 1


def test_zkey_shape() -> None:
    data = load_artifacts(20).read("zkey")
    assert zkey_shape(data) == (semaphore_calculator(20).witness_size, 4)
    for bad in (b"", b"wtns" + data[4:], data[:100]):
        with pytest.raises(Groth16Error):
            zkey_shape(bad)


def test_keys_cached_per_depth() -> None:
    assert FAST.verifier(2) is FAST.verifier(2)
    assert FAST.proving_key(2) is FAST.proving_key(2)
    with pytest.raises(ValueError):
        FAST.verifier(33)


@pytest.mark.parametrize("memfd", [True, False])
def test_bytes_as_path(memfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not memfd:
        monkeypatch.delattr(os, "memfd_create", raising=False)
    data = os.urandom(300_000)
    with bytes_as_path(data, "blob") as path:
        assert Path(path).read_bytes() == data
        assert path.startswith("/proc/self/fd/") == memfd
    if not memfd:
        assert not Path(path).exists()  # the temporary file is gone
