"""The registry tag of version-2 scopes (zk/scope_layout.py RegistryRef, docs/authorization.md
"Registry tag"): known answers computed by ethers in tests/js/gen_scope_vectors.mjs, the
refusals, and the recorded vectors recomputed live by the reference libraries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.jsbridge import ROOT, node_available
from zk.hashing import MessageError, semaphore_hash
from zk.scope_layout import RegistryRef

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "scopes.json"
VECTORS = json.loads(VECTORS_FILE.read_text("utf-8"))


@pytest.mark.parametrize("case", VECTORS["registry_tags"], ids=lambda c: f"{c['chain_id'][:10]}-{c['registry'][:8]}")
def test_registry_tag_known_answers(case: dict[str, str]) -> None:
    ref = RegistryRef(int(case["chain_id"]), case["registry"])
    assert ref.tag == int(case["tag"], 16)
    assert ref.contract == case["registry"].lower()
    assert RegistryRef(ref.chain_id, ref.contract.upper().replace("0X", "0x")) == ref  # case does not matter


@pytest.mark.parametrize(
    "chain_id,contract",
    [
        (0, "0x" + "00" * 20),  # chain ids start at 1
        (-1, "0x" + "00" * 20),
        (2**256, "0x" + "00" * 20),  # refused, never reduced
        (True, "0x" + "00" * 20),
        ("31337", "0x" + "00" * 20),
        (31337, "0x" + "00" * 19),
        (31337, "0x" + "00" * 21),
        (31337, "00" * 20 + "00"),
        (31337, "0x" + "g0" * 20),
        (31337, b"\0" * 20),
    ],
)
def test_registry_ref_refuses(chain_id: Any, contract: Any) -> None:
    with pytest.raises(ValueError):
        RegistryRef(chain_id, contract)


@pytest.mark.parametrize("case", VECTORS["refused_by_semaphore_hash"], ids=lambda c: c["value"][:6])
def test_semaphore_hash_refuses_what_the_sdk_refuses(case: dict[str, Any]) -> None:
    """A scope outside [0, 2**256) is refused by Semaphore's own hash (toBeHex throws), and
    by ours: no scope is ever reduced to fit."""
    assert case["refused"] is True
    with pytest.raises(MessageError):
        semaphore_hash(int(case["value"]))


@pytest.mark.skipif(not node_available(), reason="node and node_modules are needed")
def test_recorded_vectors_are_what_the_reference_libraries_compute() -> None:
    """The JS generator, run now, prints exactly the recorded file (its libraries did not change)."""
    proc = subprocess.run(
        ["node", "tests/js/gen_scope_vectors.mjs", "--print"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(proc.stdout) == VECTORS
