"""The committed contract artifacts: reproducible from the sources, linkable, and every
Solidity custom error mapped to a Python exception class."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from eth_abi import encode
from eth_utils import keccak

from registry.ledger import errors as E
from registry.ledger.artifacts import DEPLOYED_CONTRACTS, link_bytecode, load_artifact, placeholder
from registry.ledger.deploy import Deployment
from registry.ledger.errors import CONTRACT_ERRORS, ErrorDecoder
from registry.ledger.tx import default_decoder

ROOT = Path(__file__).resolve().parents[2]


def build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_contracts", ROOT / "scripts" / "build_contracts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_artifacts_match_a_fresh_compile() -> None:
    build = build_script()
    fresh = build.compile_all()
    assert set(fresh) == set(DEPLOYED_CONTRACTS) | {"Semaphore"}
    assert build.diff(fresh) == [], "contracts/artifacts are stale: run `make contracts`"
    settings = fresh["ZkIdRegistry"]["compiler"]
    assert settings["version"].startswith("0.8.28+")
    assert settings["settings"]["metadata"] == {"bytecodeHash": "none"}
    # The tree and hash code are the npm packages', not copies.
    sources = fresh["ZkIdRegistry"]["sources"]
    assert "@zk-kit/lean-imt.sol/InternalLeanIMT.sol" in sources
    assert "poseidon-solidity/PoseidonT3.sol" in sources
    assert not any(s.startswith("contracts/") and s != "contracts/ZkIdRegistry.sol" for s in sources)


def test_linking() -> None:
    registry = load_artifact("ZkIdRegistry")
    assert registry.libraries == ["PoseidonT3"]
    with pytest.raises(E.DeploymentError):
        registry.creation_code()
    address = "0x" + "ab" * 20
    code = registry.creation_code({"PoseidonT3": address})
    refs = registry.link_references["poseidon-solidity/PoseidonT3.sol"]["PoseidonT3"]
    assert refs and all(code[r["start"] : r["start"] + 20] == bytes.fromhex("ab" * 20) for r in refs)
    fq = registry.creation_code({"poseidon-solidity/PoseidonT3.sol:PoseidonT3": address})
    assert fq == code
    # A reference that does not point at the placeholder is refused.
    bad_refs = {"poseidon-solidity/PoseidonT3.sol": {"PoseidonT3": [{"start": 0, "length": 20}]}}
    with pytest.raises(E.DeploymentError):
        link_bytecode(registry.bytecode, bad_refs, {"PoseidonT3": address})
    assert placeholder("poseidon-solidity/PoseidonT3.sol", "PoseidonT3") in registry.bytecode
    assert load_artifact("SemaphoreVerifier").libraries == []


def test_deployed_code_matches_artifacts(deployed: Deployment) -> None:
    w3 = deployed.registry.w3
    libs = deployed.manifest.libraries
    for name in DEPLOYED_CONTRACTS:
        address = deployed.manifest.address(name)
        code = bytes(w3.eth.get_code(address))
        assert load_artifact(name).matches_deployed(code, address, libs), name
    other = bytes(w3.eth.get_code(deployed.manifest.address("EvidenceAnchor")))
    assert not load_artifact("ZkIdRegistry").matches_deployed(other, deployed.manifest.address("EvidenceAnchor"), libs)


def test_every_contract_error_has_a_python_class() -> None:
    decoder = default_decoder()
    assert decoder.error_names() == set(CONTRACT_ERRORS)
    for name, cls in CONTRACT_ERRORS.items():
        assert cls.__name__ == name == cls.solidity_name
        assert issubclass(cls, E.ContractRevert) and issubclass(cls, ValueError)


def test_decoder_handles_every_kind_of_revert_data() -> None:
    decoder = default_decoder()
    selector = keccak(text="TreeSizeNotGrowing(bytes32,uint64,uint64)")[:4]
    exc = decoder.decode(selector + encode(["bytes32", "uint64", "uint64"], [b"\x01" * 32, 5, 4]))
    assert isinstance(exc, E.TreeSizeNotGrowing)
    assert exc.args_dict == {"logId": b"\x01" * 32, "latestSize": 5, "treeSize": 4}
    assert "latestSize=5" in str(exc)
    hex_form = decoder.decode("0x" + (keccak(text="EmptyBatch()")[:4]).hex())
    assert isinstance(hex_form, E.EmptyBatch)
    panic = decoder.decode(keccak(text="Panic(uint256)")[:4] + encode(["uint256"], [0x32]))
    assert isinstance(panic, E.PanicRevert) and "out of bounds" in str(panic)
    reason = decoder.decode(keccak(text="Error(string)")[:4] + encode(["string"], ["nope"]))
    assert isinstance(reason, E.RevertWithReason) and reason.args_dict == {"reason": "nope"}
    assert isinstance(decoder.decode(b"\xde\xad\xbe\xef"), E.UnknownRevert)
    assert isinstance(decoder.decode(b""), E.UnknownRevert)
    assert isinstance(decoder.decode("0xzz"), E.UnknownRevert)
    truncated = decoder.decode(selector + b"\x00" * 5)
    assert isinstance(truncated, E.UnknownRevert) and "undecodable" in str(truncated)
    # An error known by ABI but without a class still decodes, as UnknownRevert.
    custom = ErrorDecoder([[{"type": "error", "name": "Other", "inputs": [{"name": "x", "type": "uint8"}]}]])
    other = custom.decode(keccak(text="Other(uint8)")[:4] + encode(["uint8"], [7]))
    assert isinstance(other, E.UnknownRevert) and other.args_dict == {"x": 7}
