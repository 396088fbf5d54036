"""``zkid demo``: the end-to-end run across regions on embedded ledgers, and the offline
walkthrough.

Both run as the user runs them (``python -m registry.cli demo``, a subprocess): the
ledger demo starts two Anvils (two chains), a registry on each and three relays trusting
both, on loopback ports."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_zkid

REASONS = ("slot_out_of_range", "nullifier_reused", "unknown_root", "message_mismatch")
REGIONS = ["eu-central", "gcc"]
RELAYS = ["us-east", "eu-west", "ap-southeast"]


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return run_zkid("demo", *args)


@pytest.fixture(scope="module")
def ledger_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    data = tmp_path_factory.mktemp("demo")
    return _demo("--json", "--clients", "12", "--data-dir", str(data)), data


@pytest.fixture(scope="module")
def summary(ledger_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    out, _ = ledger_run
    assert out.returncode == 0, out.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_every_expectation_holds(summary: dict[str, Any]) -> None:
    assert summary["ok"] is True
    assert summary["expectations"] and all(summary["expectations"].values()), summary["expectations"]
    assert summary["clients"] == 12
    assert [r["region"] for r in summary["relays"]] == RELAYS
    # Each relay trusts both registries; each registry has a relay of each kind.
    for relay in summary["relays"]:
        assert sorted(relay["auth"]) == REGIONS
    for region in REGIONS:
        assert {r["auth"][region] for r in summary["relays"]} == {"local", "registry"}


def test_each_region_has_its_own_ledger_and_directory(ledger_run: tuple[subprocess.CompletedProcess[str], Path], summary: dict[str, Any]) -> None:
    """Two registries on two chains: each one's manifest names its region and chain, each
    keeps its data in its own directory, and the relays' trust lists name both."""
    from registry.relay.trust_list import load_trust_list

    _, data = ledger_run
    regions = summary["regions"]
    assert sorted(regions) == REGIONS
    assert len({r["chain_id"] for r in regions.values()}) == 2
    for name, region in regions.items():
        assert Path(region["data_dir"]) == data / name
        manifest = json.loads((data / name / "registry" / "deployment.json").read_text())
        assert manifest["region"] == name and manifest["chain_id"] == region["chain_id"]
        assert region["clients"] == region["admission"]["admitted"] == 6
    # Nothing of a registry outside its region's directory.
    assert {p.name for p in data.iterdir() if p.is_dir()} == {*REGIONS, "clients", *(f"relay-{r}" for r in RELAYS)}
    for relay in summary["relays"]:
        # What the relay says it trusts (GET /v1/registries) is what its trust list names.
        assert [(e["region"], e["chain_id"]) for e in relay["registries"]] == [(r, regions[r]["chain_id"]) for r in REGIONS]
        trust = load_trust_list(data / f"relay-{relay['region']}" / "trust-list.toml")
        assert list(trust.regions) == REGIONS
        for entry in trust:
            assert entry.ref.chain_id == regions[entry.region]["chain_id"]
            assert entry.ref.contract.lower() == regions[entry.region]["registry_contract"].lower()
            assert entry.auth == relay["auth"][entry.region]


def test_clients_are_admitted_anonymously(summary: dict[str, Any]) -> None:
    """Every client's ZK-ID went through the zk admission policy (docs/admission.md): one
    admission credential per checked person, a second registration refused."""
    admission = summary["admission"]
    assert admission["policy"] == "zk" and admission["admission_group"] != summary["group_id"]
    assert admission["checked_persons"] == admission["admitted"] == summary["clients"]
    assert admission["second_registration"] == "admission_used"
    for region in summary["regions"].values():
        assert region["admission"]["checked_persons"] == region["admission"]["admitted"] == region["clients"]
        assert region["admission"]["second_registration"] == "admission_used"


def test_every_refusal_is_for_the_right_reason(summary: dict[str, Any]) -> None:
    assert set(summary["refused"]) == {*REASONS, "unknown_registry"}
    assert all(summary["refused"][r] >= 1 for r in summary["refused"])
    assert summary["refused_other"] == {}
    for refusal in summary["refusals"]:
        assert refusal["got"] == refusal["expected"], refusal
    # Each refusal is shown on both authorization paths (ledger-local and registry).
    for reason in REASONS:
        assert {r["auth"] for r in summary["refusals"] if r["expected"] == reason} == {"local", "registry"}
    assert summary["sent"] == summary["accepted"] + sum(summary["refused"].values())
    # A registry outside the trust list: refused before any path is chosen.
    assert [r["auth"] for r in summary["refusals"] if r["expected"] == "unknown_registry"] == ["none"]
    # A member of one region's group 0 is no member of the other's group 0.
    assert any("as gcc's group 0" in r["case"] and r["got"] == "unknown_root" for r in summary["refusals"])


def test_one_proof_is_accepted_at_one_relay_only(summary: dict[str, Any]) -> None:
    """The home registry is the nullifier authority: a proof accepted at one relay is
    refused at every other relay, local path included, for each region's senders."""
    for region in REGIONS:
        replays = [r for r in summary["refusals"] if r["case"].startswith(f"replay of a {region} proof")]
        accepted_at = {r["case"].rsplit(" ", 1)[-1] for r in replays}
        assert len(accepted_at) == 1
        assert {r["relay"] for r in replays} | accepted_at == set(RELAYS)
        assert {r["got"] for r in replays} == {"nullifier_reused"}
        assert {r["auth"] for r in replays} == {"local", "registry"}


def test_every_accepted_blob_is_delivered_exactly_once(summary: dict[str, Any]) -> None:
    assert summary["accepted"] >= 3
    assert summary["delivered"] == summary["accepted"]
    assert summary["delivered_exactly_once"] is True
    assert summary["accepted_cross_region"] >= 2
    for region in summary["regions"].values():
        assert region["accepted_cross_region"] >= 1 and region["accepted_to"] >= 1


def test_evidence_is_anchored_and_the_bundle_verifies(summary: dict[str, Any]) -> None:
    assert summary["anchored_size"] > 0
    assert summary["anchored_size"] == summary["evidence_records"] == summary["expected_evidence_records"]
    assert summary["bundle_valid"] is True
    assert summary["bundle_checks"]["anchor_on_ledger"] == "ok"
    assert summary["bundle_checks"]["acknowledgement"] == "ok"
    assert set(summary["bundle_checks"].values()) == {"ok"}
    # One log per region, anchored on its own ledger; one valid bundle each.
    for region in summary["regions"].values():
        assert region["anchored_size"] == region["evidence_records"] == region["expected_evidence_records"] > 0
        assert region["bundle_valid"] is True and set(region["bundle_checks"].values()) == {"ok"}
    assert summary["evidence_records"] == sum(r["evidence_records"] for r in summary["regions"].values())


def test_the_saved_bundle_verifies_with_the_cli_offline(ledger_run: tuple[subprocess.CompletedProcess[str], Path], summary: dict[str, Any]) -> None:
    # The ledger is gone after the run: without trust inputs `zkid evidence verify` refuses to
    # call anything valid; with --no-trust-anchors the offline checks still pass, and the
    # output says nothing was anchored in trust.
    _, data = ledger_run
    bundles = [data / f"bundle-{region}.json" for region in REGIONS]
    assert [Path(r["bundle_file"]) for r in summary["regions"].values()] == bundles
    assert Path(summary["bundle_file"]) == bundles[0]
    for (name, region), bundle in zip(summary["regions"].items(), bundles):
        # Each region's bundle: a record of its own chain, issued by a relay abroad.
        record = json.loads(bundle.read_text())["entries"][0]["record"]
        assert record["chainId"] == region["chain_id"] and record["region"] == region["bundle_relay"] in RELAYS
        _verify_saved_bundle(data, bundle)


def _verify_saved_bundle(data: Path, bundle: Path) -> None:
    refused = run_zkid("evidence", "verify", str(bundle), "--json", timeout=120)
    assert refused.returncode == 2 and "--no-trust-anchors" in refused.stderr
    out = run_zkid("evidence", "verify", str(bundle), "--no-trust-anchors", "--json", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    verdict = json.loads(out.stdout)
    assert verdict["passed"] is True and verdict["valid"] is False and verdict["anchoredInTrust"] is False
    # A tampered bundle is refused by the same command.
    doc = json.loads(bundle.read_text())
    doc["entries"][0]["record"]["region"] = "elsewhere"
    tampered = data / f"tampered-{bundle.name}"
    tampered.write_text(json.dumps(doc))
    bad = run_zkid("evidence", "verify", str(tampered), "--no-trust-anchors", "--json", timeout=120)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert json.loads(bad.stdout)["valid"] is False


def test_the_timeline_is_readable_without_json(tmp_path: Path) -> None:
    out = _demo("--clients", "8", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    for text in ("eu-central", "gcc", "us-east", "eu-west", "ap-southeast", "slot_out_of_range", "nullifier_reused",
                 "unknown_root", "message_mismatch", "unknown_registry", "VALID", "expectations hold"):
        assert text in out.stdout


def test_every_registry_is_reached_on_both_paths_and_one_relay_checks_all_locally() -> None:
    """The topology the scenario relies on: two chains, and for each registry a relay that
    asks it and one that checks locally (each refusal is shown on both paths)."""
    from registry.demo.regions import REGISTRIES, RELAYS as TOPOLOGY

    assert [name for name, _ in REGISTRIES] == REGIONS and len({chain for _, chain in REGISTRIES}) == 2
    assert [name for name, _ in TOPOLOGY] == RELAYS
    for region in REGIONS:
        assert {auth[region] for _, auth in TOPOLOGY} == {"local", "registry"}
    assert any(set(auth.values()) == {"local"} for _, auth in TOPOLOGY)


def test_offline_demo_refuses_each_case_for_the_right_reason() -> None:
    out = _demo("--offline", "--members", "8", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["proof_valid"] is True
    assert summary["outcomes"] == {
        "first_send": "ok",
        "replayed_proof": "nullifier_reused",
        "proof_moved_to_other_blob": "message_mismatch",
        "over_epoch_limit": "slot_out_of_range",
        "non_member": "unknown_root",
    }
