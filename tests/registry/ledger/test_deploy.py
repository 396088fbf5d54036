"""Deployment and its manifest on the session's Anvil."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from registry.ledger import errors as E
from registry.ledger.artifacts import DEPLOYED_CONTRACTS, load_artifact
from registry.ledger.deploy import (
    Manifest,
    check_region,
    ensure_deployment,
    load_manifest,
    manifest_path,
    save_manifest,
    verify_deployment,
)
from registry.ledger.tx import Transactor

pytestmark = pytest.mark.usefixtures("chain")


def test_deploy_once_then_find(ledger_tx: Transactor, tmp_path: Path) -> None:
    first = ensure_deployment(ledger_tx, tmp_path, region="eu-test", root_window=120)
    assert first.created
    m = first.manifest
    data = json.loads(manifest_path(tmp_path).read_text())
    assert set(data) >= {
        "chain_id",
        "genesis_hash",
        "region",
        "deployer",
        "deployment_block",
        "deployment_block_hash",
        "contracts",
        "default_group_id",
        "root_window",
        "deployed_at",
        "version",
    }
    assert (m.chain_id, m.region, m.deployer, m.default_group_id, m.root_window) == (
        31337,
        "eu-test",
        ledger_tx.address,
        0,
        120,
    )
    assert list(m.contracts) == list(DEPLOYED_CONTRACTS)
    for name, record in m.contracts.items():
        assert record.artifact_sha256 == load_artifact(name).sha256
        assert record.block_number >= m.deployment_block
    assert first.registry.verifier_address() == m.address("SemaphoreVerifier")
    assert first.registry.group(0).root_window == 120

    second = ensure_deployment(ledger_tx, tmp_path)
    assert not second.created and second.manifest == m
    assert Manifest.from_dict(data) == m


def test_broken_manifests_are_reported(ledger_tx: Transactor, tmp_path: Path) -> None:
    m = ensure_deployment(ledger_tx, tmp_path).manifest
    w3 = ledger_tx.w3
    assert verify_deployment(w3, m) == []

    moved = replace(m, contracts={**m.contracts, "ZkIdRegistry": replace(m.contracts["ZkIdRegistry"], address=m.address("EvidenceAnchor"))})
    assert any("not the artifact's" in p for p in verify_deployment(w3, moved))
    empty = replace(m, contracts={**m.contracts, "EvidenceAnchor": replace(m.contracts["EvidenceAnchor"], address="0x" + "12" * 20)})
    assert any("no code" in p for p in verify_deployment(w3, empty))
    stale = replace(m, contracts={**m.contracts, "PoseidonT3": replace(m.contracts["PoseidonT3"], artifact_sha256="00" * 32)})
    assert any("changed since" in p for p in verify_deployment(w3, stale))
    assert "genesis" in verify_deployment(w3, replace(m, genesis_hash="0x" + "00" * 32))[0]
    assert "chain" in verify_deployment(w3, replace(m, chain_id=1))[0]

    save_manifest(tmp_path, empty)
    with pytest.raises(E.DeploymentError, match="--force"):
        ensure_deployment(ledger_tx, tmp_path)
    again = ensure_deployment(ledger_tx, tmp_path, force=True)
    assert again.created and load_manifest(tmp_path) == again.manifest


def test_manifest_and_region_validation(tmp_path: Path) -> None:
    assert load_manifest(tmp_path) is None
    manifest_path(tmp_path).write_text("{not json")
    with pytest.raises(E.DeploymentError):
        load_manifest(tmp_path)
    manifest_path(tmp_path).write_text(json.dumps({"version": 99}))
    with pytest.raises(E.DeploymentError, match="version"):
        load_manifest(tmp_path)
    manifest_path(tmp_path).write_text(json.dumps({"version": 1, "contracts": {}}))
    with pytest.raises(E.DeploymentError, match="malformed"):
        load_manifest(tmp_path)
    for bad in ("", "eu west", "x" * 65, "../up"):
        with pytest.raises(ValueError):
            check_region(bad)
    assert check_region("eu-west-1") == "eu-west-1"


def test_deploy_with_another_account(make_transactor: Any, tmp_path: Path) -> None:
    tx = make_transactor(7)
    d = ensure_deployment(tx, tmp_path)
    assert d.manifest.deployer == tx.address and d.registry.group(0).admin == tx.address
