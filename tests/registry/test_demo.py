"""``zkid demo``: the end-to-end run on an embedded ledger, and the offline walkthrough.

Both run as the user runs them (``python -m registry.cli demo``, a subprocess): the
ledger demo starts its own Anvil, registry and three relays on loopback ports."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REASONS = ("slot_out_of_range", "nullifier_reused", "unknown_root", "message_mismatch")


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", "demo", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


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
    assert {r["auth"] for r in summary["relays"]} == {"local", "registry"}
    assert [r["region"] for r in summary["relays"]] == ["us-east", "eu-west", "ap-southeast"]


def test_clients_are_admitted_anonymously(summary: dict[str, Any]) -> None:
    """Every client's ZK-ID went through the zk admission policy (docs/admission.md): one
    admission credential per checked person, a second registration refused."""
    admission = summary["admission"]
    assert admission["policy"] == "zk" and admission["admission_group"] != summary["group_id"]
    assert admission["checked_persons"] == admission["admitted"] == summary["clients"]
    assert admission["second_registration"] == "admission_used"


def test_every_refusal_is_for_the_right_reason(summary: dict[str, Any]) -> None:
    assert set(summary["refused"]) == set(REASONS)
    assert all(summary["refused"][r] >= 1 for r in REASONS)
    assert summary["refused_other"] == {}
    for refusal in summary["refusals"]:
        assert refusal["got"] == refusal["expected"], refusal
    # Each refusal is shown on both authorization paths (ledger-local and registry).
    for reason in REASONS:
        assert {r["auth"] for r in summary["refusals"] if r["expected"] == reason} == {"local", "registry"}
    assert summary["sent"] == summary["accepted"] + sum(summary["refused"].values())


def test_every_accepted_blob_is_delivered_exactly_once(summary: dict[str, Any]) -> None:
    assert summary["accepted"] >= 3
    assert summary["delivered"] == summary["accepted"]
    assert summary["delivered_exactly_once"] is True


def test_evidence_is_anchored_and_the_bundle_verifies(summary: dict[str, Any]) -> None:
    assert summary["anchored_size"] > 0
    assert summary["anchored_size"] == summary["evidence_records"] == summary["expected_evidence_records"]
    assert summary["bundle_valid"] is True
    assert summary["bundle_checks"]["anchor_on_ledger"] == "ok"
    assert summary["bundle_checks"]["acknowledgement"] == "ok"
    assert set(summary["bundle_checks"].values()) == {"ok"}


def test_the_saved_bundle_verifies_with_the_cli_offline(ledger_run: tuple[subprocess.CompletedProcess[str], Path], summary: dict[str, Any]) -> None:
    # The ledger is gone after the run: without trust inputs `zkid evidence verify` refuses to
    # call anything valid; with --no-trust-anchors the offline checks still pass, and the
    # output says nothing was anchored in trust.
    _, data = ledger_run
    bundle = data / "bundle.json"
    assert Path(summary["bundle_file"]) == bundle and bundle.is_file()
    refused = subprocess.run(
        [sys.executable, "-m", "registry.cli", "evidence", "verify", str(bundle), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert refused.returncode == 2 and "--no-trust-anchors" in refused.stderr
    out = subprocess.run(
        [sys.executable, "-m", "registry.cli", "evidence", "verify", str(bundle), "--no-trust-anchors", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    verdict = json.loads(out.stdout)
    assert verdict["passed"] is True and verdict["valid"] is False and verdict["anchoredInTrust"] is False
    # A tampered bundle is refused by the same command.
    doc = json.loads(bundle.read_text())
    doc["entries"][0]["record"]["region"] = "elsewhere"
    tampered = data / "tampered.json"
    tampered.write_text(json.dumps(doc))
    bad = subprocess.run(
        [sys.executable, "-m", "registry.cli", "evidence", "verify", str(tampered), "--no-trust-anchors", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert json.loads(bad.stdout)["valid"] is False


def test_the_timeline_is_readable_without_json(tmp_path: Path) -> None:
    out = _demo("--clients", "8", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    for text in ("us-east", "eu-west", "ap-southeast", "slot_out_of_range", "nullifier_reused",
                 "unknown_root", "message_mismatch", "VALID", "expectations hold"):
        assert text in out.stdout


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
