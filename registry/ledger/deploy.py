"""Deployment of the registry's contracts and the deployment manifest.

Order: PoseidonT3 (a linked library: lean-imt's InternalLeanIMT calls ``PoseidonT3.hash``
as a public library function), the official SemaphoreVerifier (deployed as compiled from
``@semaphore-protocol/contracts``, so the ceremony keys apply), ZkIdRegistry (linked to
PoseidonT3, constructed with the verifier), EvidenceAnchor; then the default group 0 with
the deployer as admin.

The manifest (``<data dir>/deployment.json``) records the chain (id, genesis hash), the
addresses, the deployment block and the SHA-256 of each artifact file, so that a later run
can check that the code is still there, on the same chain, and matches the artifacts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hexbytes import HexBytes
from web3 import Web3

from registry.ledger.anchor_contract import AnchorContract
from registry.ledger.artifacts import DEPLOYED_CONTRACTS, load_artifact
from registry.ledger.errors import DeploymentError, unreachable
from registry.ledger.registry_contract import DEFAULT_ROOT_WINDOW, RegistryContract
from registry.ledger.tx import Transactor
from zk import strict_json

MANIFEST_FILE = "deployment.json"
MANIFEST_VERSION = 1
DEFAULT_GROUP_ID = 0
_REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ContractRecord:
    address: str
    artifact_sha256: str
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class Manifest:
    """Where and what was deployed (see the module docstring and docs/ledger.md)."""

    chain_id: int
    genesis_hash: str
    region: str
    deployer: str
    deployment_block: int
    deployment_block_hash: str
    default_group_id: int
    root_window: int
    deployed_at: int
    contracts: dict[str, ContractRecord] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def address(self, name: str) -> str:
        try:
            return self.contracts[name].address
        except KeyError:
            raise DeploymentError(f"the deployment manifest has no {name}") from None

    @property
    def libraries(self) -> dict[str, str]:
        return {"PoseidonT3": self.address("PoseidonT3")}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise DeploymentError("malformed deployment manifest: not a JSON object")
        try:
            if data["version"] != MANIFEST_VERSION:
                raise DeploymentError(f"unsupported manifest version {data['version']!r}")
            contracts = {str(k): ContractRecord(**v) for k, v in data["contracts"].items()}
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k not in ("contracts",)}
            return cls(**{**fields, "contracts": contracts})
        except (KeyError, TypeError, AttributeError) as exc:
            raise DeploymentError(f"malformed deployment manifest: {exc}") from exc


def manifest_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / MANIFEST_FILE


def read_manifest(path: Path | str) -> Manifest:
    """The manifest file at ``path``, parsed strictly (zk/strict_json.py: duplicate keys,
    deep nesting, NaN refused); :class:`DeploymentError` with a one-line message otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DeploymentError(f"cannot read deployment manifest {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        data = strict_json.loads(raw)
    except strict_json.JsonInputError as exc:
        raise DeploymentError(f"deployment manifest {path} is not acceptable JSON ({exc.code}): {exc}") from None
    try:
        return Manifest.from_dict(data)
    except DeploymentError as exc:
        raise DeploymentError(f"{path}: {exc}") from None


def load_manifest(data_dir: Path | str) -> Manifest | None:
    """The manifest in ``data_dir`` (None if there is none)."""
    path = manifest_path(data_dir)
    if not path.exists():
        return None
    return read_manifest(path)


def save_manifest(data_dir: Path | str, manifest: Manifest) -> Path:
    """Write atomically (a crash leaves the old manifest or the new one, never half)."""
    path = manifest_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def check_region(region: str) -> str:
    if not isinstance(region, str) or not _REGION_RE.match(region):
        raise ValueError("region must be 1-64 characters: letters, digits, '.', '_', '-'")
    return region


def _record(name: str, address: str, receipt: Any) -> ContractRecord:
    return ContractRecord(
        address=address,
        artifact_sha256=load_artifact(name).sha256,
        tx_hash=HexBytes(receipt["transactionHash"]).to_0x_hex(),
        block_number=int(receipt["blockNumber"]),
    )


def deploy_contracts(tx: Transactor, region: str = "local", root_window: int = DEFAULT_ROOT_WINDOW) -> Manifest:
    """Deploy everything with ``tx``'s account and create group 0; return the manifest."""
    check_region(region)
    w3 = tx.w3
    records: dict[str, ContractRecord] = {}

    poseidon, receipt = tx.deploy(load_artifact("PoseidonT3").creation_code())
    records["PoseidonT3"] = _record("PoseidonT3", poseidon, receipt)
    first_block = int(receipt["blockNumber"])

    verifier, receipt = tx.deploy(load_artifact("SemaphoreVerifier").creation_code())
    records["SemaphoreVerifier"] = _record("SemaphoreVerifier", verifier, receipt)

    reg_art = load_artifact("ZkIdRegistry")
    registry, receipt = tx.deploy(reg_art.creation_code({"PoseidonT3": poseidon}), reg_art.abi, [verifier])
    records["ZkIdRegistry"] = _record("ZkIdRegistry", registry, receipt)

    anchor, receipt = tx.deploy(load_artifact("EvidenceAnchor").creation_code())
    records["EvidenceAnchor"] = _record("EvidenceAnchor", anchor, receipt)

    group_id = RegistryContract(w3, registry, tx).create_group(tx.address, root_window)
    if group_id != DEFAULT_GROUP_ID:
        raise DeploymentError(f"the default group got id {group_id}, expected {DEFAULT_GROUP_ID}")

    block = w3.eth.get_block(first_block)
    return Manifest(
        chain_id=tx.chain_id,
        genesis_hash=HexBytes(w3.eth.get_block(0)["hash"]).to_0x_hex(),
        region=region,
        deployer=tx.address,
        deployment_block=first_block,
        deployment_block_hash=HexBytes(block["hash"]).to_0x_hex(),
        default_group_id=group_id,
        root_window=root_window,
        deployed_at=int(block["timestamp"]),
        contracts=records,
    )


def verify_deployment(w3: Web3, manifest: Manifest) -> list[str]:
    """Problems that make ``manifest`` unusable on ``w3``'s chain (empty list: all good)."""
    try:
        chain_id = int(w3.eth.chain_id)
        genesis = HexBytes(w3.eth.get_block(0)["hash"]).to_0x_hex()
    except Exception as exc:
        raise unreachable(getattr(w3.provider, "endpoint_uri", "?"), exc) from exc
    if chain_id != manifest.chain_id:
        return [f"the node is chain {chain_id}, the manifest is for chain {manifest.chain_id}"]
    if genesis != manifest.genesis_hash:
        return ["the node's chain is not the one deployed to (genesis block differs: reset or another chain)"]
    problems = []
    for name in DEPLOYED_CONTRACTS:
        record = manifest.contracts.get(name)
        if record is None:
            problems.append(f"{name} is missing from the manifest")
            continue
        artifact = load_artifact(name)
        if artifact.sha256 != record.artifact_sha256:
            problems.append(f"{name}: contracts/artifacts/{name}.json changed since the deployment")
            continue
        code = bytes(w3.eth.get_code(Web3.to_checksum_address(record.address)))
        if not code:
            problems.append(f"{name}: no code at {record.address}")
        elif not artifact.matches_deployed(code, record.address, manifest.libraries):
            problems.append(f"{name}: the code at {record.address} is not the artifact's")
    return problems


@dataclass(frozen=True)
class Deployment:
    """A verified deployment with its contract wrappers."""

    manifest: Manifest
    registry: RegistryContract
    anchor: AnchorContract
    created: bool


def open_deployment(w3: Web3, manifest: Manifest, tx: Transactor | None = None) -> Deployment:
    return Deployment(
        manifest=manifest,
        registry=RegistryContract(w3, manifest.address("ZkIdRegistry"), tx),
        anchor=AnchorContract(w3, manifest.address("EvidenceAnchor"), tx),
        created=False,
    )


def ensure_deployment(
    tx: Transactor,
    data_dir: Path | str,
    *,
    region: str = "local",
    root_window: int = DEFAULT_ROOT_WINDOW,
    force: bool = False,
    persist: Callable[[], object] | None = None,
) -> Deployment:
    """Reuse the deployment recorded in ``data_dir`` if it checks out; deploy if there is none.

    A manifest whose contracts are gone or changed is an error (no silent redeploy) unless
    ``force``. ``persist`` is called after a new deployment and before its manifest is written
    (the local ledger's :meth:`~registry.ledger.anvil.LocalLedger.checkpoint`): a node that can
    lose recent blocks, as Anvil does on a kill -9, must not lose the contracts a manifest names.
    """
    existing = load_manifest(data_dir)
    if existing is not None and not force:
        problems = verify_deployment(tx.w3, existing)
        if problems:
            raise DeploymentError(
                f"{manifest_path(data_dir)} does not match the ledger: {problems[0]}"
                + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                + "; redeploy with --force"
            )
        return open_deployment(tx.w3, existing, tx)
    manifest = deploy_contracts(tx, region=region, root_window=root_window)
    if persist is not None:
        persist()
    save_manifest(data_dir, manifest)
    deployment = open_deployment(tx.w3, manifest, tx)
    return Deployment(deployment.manifest, deployment.registry, deployment.anchor, created=True)
