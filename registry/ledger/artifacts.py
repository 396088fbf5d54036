"""Contract artifacts: the committed ABI and bytecode JSON files, and library linking.

The artifacts in ``contracts/artifacts/`` are produced by ``scripts/build_contracts.py``
(solc-js Standard JSON output), so running the project needs no compiler. Linking follows
solc's link references: each ``{start, length}`` range of the bytecode holds the placeholder
``__$<first 34 hex chars of keccak256(fully qualified library name)>$__`` and receives the
library's 20-byte address (Solidity docs, "Library Linking").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils.address import to_canonical_address
from eth_utils.crypto import keccak

from registry.ledger.errors import DeploymentError

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_ENV = "ZKID_CONTRACT_ARTIFACTS"

#: The contracts the registry deploys, in deployment order.
DEPLOYED_CONTRACTS = ("PoseidonT3", "SemaphoreVerifier", "ZkIdRegistry", "EvidenceAnchor")


def artifacts_dir() -> Path:
    return Path(os.environ.get(ARTIFACTS_ENV) or ROOT / "contracts" / "artifacts")


LinkRefs = Mapping[str, Mapping[str, list[dict[str, int]]]]


@dataclass(frozen=True)
class Artifact:
    """One compiled contract (see ``scripts/build_contracts.py`` for the file format)."""

    name: str
    source_name: str
    role: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    link_references: dict[str, dict[str, list[dict[str, int]]]] = field(repr=False)
    deployed_link_references: dict[str, dict[str, list[dict[str, int]]]] = field(repr=False)
    immutable_references: dict[str, list[dict[str, int]]] = field(repr=False)
    sha256: str

    @property
    def libraries(self) -> list[str]:
        """Names of the libraries that must be linked before deployment."""
        return sorted({lib for refs in self.link_references.values() for lib in refs})

    def creation_code(self, libraries: Mapping[str, str] | None = None) -> bytes:
        return link_bytecode(self.bytecode, self.link_references, libraries or {})

    def runtime_code(self, libraries: Mapping[str, str] | None = None) -> bytes:
        return link_bytecode(self.deployed_bytecode, self.deployed_link_references, libraries or {})

    def matches_deployed(self, code: bytes, address: str, libraries: Mapping[str, str] | None = None) -> bool:
        """Whether ``code`` (from ``eth_getCode``) is this contract's runtime code.

        Immutables are filled in by the constructor and a library's code embeds its own
        address (solc's call protection: ``PUSH20 <address>`` at offset 1), so those bytes are
        taken from ``code``/``address`` before comparing.
        """
        expected = bytearray(self.runtime_code(libraries))
        if len(code) != len(expected):
            return False
        for refs in self.immutable_references.values():
            for ref in refs:
                start, length = ref["start"], ref["length"]
                expected[start : start + length] = code[start : start + length]
        if self.role == "library" and expected[:1] == b"\x73":
            expected[1:21] = to_canonical_address(address)
        return bytes(expected) == code


def placeholder(source_name: str, library: str) -> str:
    """solc's link placeholder for ``source_name:library`` (40 hex characters)."""
    return "__$" + keccak(text=f"{source_name}:{library}").hex()[:34] + "$__"


def link_bytecode(bytecode: str, link_refs: LinkRefs, libraries: Mapping[str, str]) -> bytes:
    """Replace every library placeholder in hex ``bytecode`` by its address.

    ``libraries`` maps a library name (``PoseidonT3``) or fully qualified name
    (``poseidon-solidity/PoseidonT3.sol:PoseidonT3``) to its address.
    """
    code = bytecode[2:] if bytecode.startswith("0x") else bytecode
    chars = list(code)
    for source_name, refs in link_refs.items():
        for library, positions in refs.items():
            address = libraries.get(f"{source_name}:{library}") or libraries.get(library)
            if address is None:
                raise DeploymentError(f"library {library} ({source_name}) has no address to link")
            address_hex = to_canonical_address(address).hex()
            expected = placeholder(source_name, library)
            for pos in positions:
                start, length = 2 * pos["start"], 2 * pos["length"]
                if length != 40 or code[start : start + length] != expected:
                    raise DeploymentError(f"bad link reference for {library} at byte {pos['start']}")
                chars[start : start + length] = address_hex
    linked = "".join(chars)
    if "__$" in linked:
        raise DeploymentError("bytecode still holds an unlinked library placeholder")
    try:
        return bytes.fromhex(linked)
    except ValueError as exc:
        raise DeploymentError(f"bytecode is not valid hex: {exc}") from exc


def _load(path: Path) -> Artifact:
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        return Artifact(
            name=data["contractName"],
            source_name=data["sourceName"],
            role=data.get("role", ""),
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            link_references=data.get("linkReferences", {}),
            deployed_link_references=data.get("deployedLinkReferences", {}),
            immutable_references=data.get("immutableReferences", {}),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DeploymentError(f"malformed contract artifact {path}: {exc}") from exc


@cache
def _load_cached(path: str, mtime_ns: int) -> Artifact:
    return _load(Path(path))


def load_artifact(name: str) -> Artifact:
    """Load ``contracts/artifacts/<name>.json`` (cached while the file is unchanged)."""
    path = artifacts_dir() / f"{name}.json"
    if not path.is_file():
        raise DeploymentError(f"contract artifact {path} is missing (run `make contracts`)")
    return _load_cached(str(path), path.stat().st_mtime_ns)


def load_abi(name: str) -> list[dict[str, Any]]:
    return load_artifact(name).abi
