"""zk.groth16.reference: what only the py_ecc verifier has (key parsing, the module-level
``verify``). The backend contract, run over both backends, is in test_backends.py.

Each pairing check costs about 0.6 s, so only a handful run here.
"""

from __future__ import annotations

import json

import groth16py
import pytest

from tests.zk.groth16.helpers import public_signals, twist_point_off_subgroup, vector
from zk.artifacts import load_artifacts
from zk.field import R
from zk.groth16 import get_backend
from zk.groth16.encoding import Proof, ProofEncodingError
from zk.groth16.reference import ReferenceBackend, VerificationKey, verify

REF = get_backend("reference")


def test_reference_backend_type() -> None:
    assert isinstance(REF, ReferenceBackend) and REF.name == "reference"


def test_key_parsing_agrees_with_groth16py() -> None:
    raw = load_artifacts(2).read("vkey")
    ours = VerificationKey.from_snarkjs(json.loads(raw))
    theirs = json.loads(groth16py.VerifyingKey.from_snarkjs(raw.decode()).to_json())
    assert [list(map(str, p)) + ["1"] for p in ours.ic] == theirs["IC"]
    assert [[str(c) for c in row] for row in ours.delta] == theirs["vk_delta_2"][:2]
    assert REF.key(2) is REF.key(2)


def test_cheap_rejections() -> None:
    vec = vector(2)
    proof = Proof.from_decimal_points(vec["proof"]["points"])
    signals = public_signals(vec)
    key = REF.key(2)
    assert verify(key, proof, signals[:3]) is False
    assert verify(key, proof, [R] + signals[1:]) is False
    assert verify(key, proof, [True] + signals[1:]) is False
    assert verify(key, "proof", signals) is False  # type: ignore[arg-type]
    # B outside the subgroup: test_backends.py, for both backends.
    with pytest.raises(ValueError):
        REF.verify(0, proof, signals)


def test_bad_keys_refused() -> None:
    data = json.loads(load_artifacts(1).read("vkey"))
    for change in ({"nPublic": 3}, {"protocol": "plonk"}, {"IC": data["IC"][:-1]}):
        with pytest.raises(ProofEncodingError):
            VerificationKey.from_snarkjs({**data, **change})
    off = twist_point_off_subgroup()
    rogue = [[str(off[0][0]), str(off[0][1])], [str(off[1][0]), str(off[1][1])], ["1", "0"]]
    with pytest.raises(ProofEncodingError, match="subgroup"):
        VerificationKey.from_snarkjs({**data, "vk_delta_2": rogue})
