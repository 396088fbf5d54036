"""Semaphore v4 identity against @semaphore-protocol/identity 4.14.3: recorded vectors and
live checks that identities and signatures cross between Python and JS."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk import babyjubjub as bj
from zk.eddsa_poseidon import Signature
from zk.field import R
from zk.identity import Identity
from zk.poseidon import poseidon2

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "identity.json"


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def _decode_key(key: dict[str, str]) -> bytes | str:
    return key["text"] if "text" in key else bytes.fromhex(key["hex"])


@pytest.mark.parametrize("entry", _vectors()["identities"], ids=lambda e: repr(e["key"])[:24])
def test_js_vectors(entry: dict[str, Any]) -> None:
    key = _decode_key(entry["key"])
    identity = Identity(key)
    assert identity.private_key == (key.encode() if isinstance(key, str) else key)
    assert identity.export() == entry["export"]
    assert identity.secret_scalar == int(entry["secretScalar"])
    assert identity.public_key == (int(entry["publicKey"][0]), int(entry["publicKey"][1]))
    assert identity.commitment == int(entry["commitment"])
    assert Identity.import_(entry["export"]).commitment == identity.commitment
    sig = entry["signature"]
    expected = Signature((int(sig["R8"][0]), int(sig["R8"][1])), int(sig["S"]))
    assert identity.sign_message(int(sig["message"])) == expected
    assert Identity.verify_signature(int(sig["message"]), expected, identity.public_key)


@pytest.mark.parametrize("case", _vectors()["imports"], ids=lambda c: c["export"][:12] or "empty")
def test_js_imports(case: dict[str, str]) -> None:
    assert Identity.import_(case["export"]).commitment == int(case["commitment"])


def test_commitment_is_poseidon2_of_public_key() -> None:
    identity = Identity("x")
    assert identity.commitment == poseidon2(*identity.public_key)
    assert Identity.generate_commitment(identity.public_key) == identity.commitment
    with pytest.raises(bj.CurveError):
        Identity.generate_commitment((1, 2))


def test_random_identities() -> None:
    a, b = Identity(), Identity()
    assert len(a.private_key) == 32 and a.private_key != b.private_key
    assert a.commitment != b.commitment
    assert Identity.import_(a.export()) == a
    assert 0 < a.secret_scalar < bj.SUBORDER
    assert bj.mul_base8(a.secret_scalar) == a.public_key


def test_text_and_bytes_keys_agree() -> None:
    assert Identity("naïve") == Identity("naïve".encode())
    assert Identity("naïve").export() == base64.b64encode("naïve".encode()).decode()


def test_repr_hides_private_key() -> None:
    identity = Identity("a very secret key")
    text = repr(identity)
    assert "secret" not in text and identity.export() not in text
    assert str(identity.commitment) in text


@pytest.mark.parametrize(
    "bad",
    ["c2VjcmV0!", "c2VjcmV0=", "YQ", "YR==", "c2Vj cmV0", "c2VjcmV0\n", "c2VjcmV0_-", "clé", 5, None],
)
def test_import_rejects_non_canonical_base64(bad: Any) -> None:
    with pytest.raises(ValueError):
        Identity.import_(bad)


@pytest.mark.parametrize("bad", [5, ["k"], 1.5, "\udc80"])
def test_bad_private_key(bad: Any) -> None:
    with pytest.raises(ValueError):
        Identity(bad)


def test_sign_and_verify() -> None:
    identity = Identity(b"\x01" * 32)
    sig = identity.sign_message(7)
    assert Identity.verify_signature(7, sig, identity.public_key)
    assert not Identity.verify_signature(8, sig, identity.public_key)
    assert not Identity.verify_signature(7, sig, Identity(b"\x02" * 32).public_key)
    with pytest.raises(ValueError):
        identity.sign_message(R)


@needs_node
def test_live_identity_crosses_both_ways() -> None:
    rng = random.Random(42)
    py_ids = [Identity(rng.randbytes(32)) for _ in range(3)] + [Identity("mot de passe ✓"), Identity(b"")]
    # Made in Python, imported in JS: same public key and commitment.
    out = run_js("identity_live.mjs", {"op": "import", "items": [i.export() for i in py_ids]})["results"]
    for identity, js in zip(py_ids, out):
        assert int(js["commitment"]) == identity.commitment
        assert (int(js["publicKey"][0]), int(js["publicKey"][1])) == identity.public_key
        assert js["export"] == identity.export()
    # Made in JS (from text and bytes keys), imported in Python.
    keys = [{"text": "alice"}, {"text": "ключ"}, {"hex": rng.randbytes(48).hex()}]
    js_ids = run_js("identity_live.mjs", {"op": "create", "items": keys})["results"]
    for key, js in zip(keys, js_ids):
        identity = Identity.import_(js["export"])
        assert identity.commitment == int(js["commitment"])
        assert identity == Identity(_decode_key(key))


@needs_node
def test_live_signatures_cross_both_ways() -> None:
    rng = random.Random(43)
    identity = Identity(rng.randbytes(32))
    messages = [rng.randrange(R) for _ in range(3)] + [0, R - 1]
    pk = [str(identity.public_key[0]), str(identity.public_key[1])]
    items = []
    for m in messages:
        sig = identity.sign_message(m)
        items.append({"message": str(m), "signature": {"R8": [str(sig.R8[0]), str(sig.R8[1])], "S": str(sig.S)}, "publicKey": pk})
    assert run_js("identity_live.mjs", {"op": "verify", "items": items})["results"] == [True] * len(items)
    js_sigs = run_js(
        "identity_live.mjs", {"op": "sign", "items": [{"export": identity.export(), "message": str(m)} for m in messages]}
    )["results"]
    for m, js in zip(messages, js_sigs):
        sig = Signature((int(js["R8"][0]), int(js["R8"][1])), int(js["S"]))
        assert Identity.verify_signature(m, sig, identity.public_key)
        assert sig == identity.sign_message(m)
