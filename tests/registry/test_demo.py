import json
import subprocess
import sys


def test_demo_refuses_each_case_for_the_right_reason() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "registry.cli", "demo", "--members", "8", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
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
