"""BLAKE-512 (original BLAKE): the specification's vectors and the JS library's implementation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jsbridge import run_js
from tests.support.node import needs_node
from zk.blake512 import blake512

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "blake512.json"

# "SHA-3 proposal BLAKE" (Aumasson et al., v1.3), Appendix A.4: BLAKE-512 of the 8-bit
# message 0x00 and of the 1152-bit message of 144 zero bytes.
SPEC_ONE_BYTE = (
    "97961587f6d970faba6d2478045de6d1fabd09b61ae50932054d52bc29d31be4"
    "ff9102b9f69e2bbdb83be13d4b9c06091e5fa0b48bd081b634058be0ec49beb3"
)
SPEC_144_BYTES = (
    "313717d608e9cf758dcb1eb0f0c3cf9fc150b2d500fb33f51c52afc99d358a2f"
    "1374b8a38bba7974e7f6ef79cab16f22ce1e649d6e01ad9589c213045d545dde"
)


def test_spec_vectors() -> None:
    assert blake512(b"\x00").hex() == SPEC_ONE_BYTE
    assert blake512(b"\x00" * 144).hex() == SPEC_144_BYTES


def test_not_blake2b() -> None:
    import hashlib

    assert blake512(b"") != hashlib.blake2b(b"").digest()


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]
    return cases


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"len{len(c['input']) // 2}")
def test_js_library_vectors(case: dict[str, Any]) -> None:
    assert blake512(bytes.fromhex(case["input"])).hex() == case["digest"]


def test_vectors_cover_padding_boundaries() -> None:
    lengths = {len(c["input"]) // 2 for c in _cases()}
    # 111: one padding byte (0x81); 112: padding spills into a counter-0 block; 128: full block.
    assert {0, 111, 112, 127, 128, 239, 240} <= lengths


def test_accepts_bytes_like() -> None:
    assert blake512(bytearray(b"abc")) == blake512(b"abc") == blake512(memoryview(b"abc"))
    assert len(blake512(b"abc")) == 64


@pytest.mark.parametrize("bad", ["abc", 123, None, [1, 2]])
def test_rejects_non_bytes(bad: Any) -> None:
    with pytest.raises(TypeError):
        blake512(bad)


@needs_node
@settings(max_examples=1, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=12, max_size=12))
def test_live_cross_check(messages: list[bytes]) -> None:
    out = run_js("eddsa_live.mjs", {"op": "blake512", "items": [m.hex() for m in messages]})
    assert out["results"] == [blake512(m).hex() for m in messages]
