"""Every benchmark runs with tiny parameters, so none rots (breaks unnoticed between runs
of ``make bench``).

Each case runs ``python -m benchmarks.<name>`` in its own process (as ``make bench`` does;
the HTTP benchmarks start their servers and load generators as further processes) and
checks that it printed its JSON with the expected keys and that every number in it is
finite and non-negative. No timing is asserted: the figures of a tiny run on a shared
machine mean nothing; that it runs to the end does.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.plot import plot_load_profile

ROOT = Path(__file__).resolve().parents[2]

#: name -> (tiny arguments, top-level or dotted keys the JSON must hold). ``{tmp}`` in an
#: argument is replaced by the test's temporary directory.
CASES: dict[str, tuple[list[str], list[str]]] = {
    "bench_poseidon": (["--count", "50"], ["poseidon2_hashes_per_s", "reference_hashes_per_s", "backend"]),
    "bench_tree": (["--size", "64", "--proofs", "8", "--no-node"], ["build_insert_many_s", "generate_proof_median_us", "depth"]),
    "bench_evidence": (["--leaves", "256", "--runs", "1"], ["inclusion_proof_generation.median_ms", "bundle_verify_eddsa_ack.median_ms"]),
    "bench_proof": (["--runs", "1", "--cli-runs", "1", "--ref-runs", "1", "--no-node"],
                    ["python.witness_plus_prove_s", "python.verify_fast_ms", "python.verify_many_per_s"]),
    "bench_admission": (["--open", "10", "--persons", "1"], ["open.per_second", "zk.per_second", "zk.client_proof_seconds_each"]),
    "bench_cli_startup": (["--runs", "1", "--help-runs", "1"],
                          ["zkid_help_s.median", "zkid_proof_generate_s.median", "snarkjs_fullprove_s.median", "same_root_and_nullifier"]),
    "bench_gas": (["--max-size", "1", "--fill-batch", "10", "--batches", "10"], ["rows", "never_worse"]),
    "bench_evidence_log": (["--records", "20", "--batch", "10", "--single", "4", "--anchors", "1", "--concurrency", "1"],
                           ["http", "gas.first_anchor", "gas.per_1000_records"]),
    "bench_registration_load": (["--count", "20", "--clients", "2", "--per-request", "10", "--timeout", "120"],
                                ["size_on_chain", "accept_seconds", "registrations_per_second_anchored", "health"]),
    "bench_registry_core": (
        ["--backfill-members", "20", "--rebuild-members", "20", "--fill-batch", "10", "--single-events", "3",
         "--registrations", "10", "--batch-size", "10", "--single-tx", "2"],
        ["index.backfill", "single_member_events.membership_events_per_s", "intake.accepted_per_s",
         "intake.seconds_until_all_anchored"],
    ),
    "bench_registry_http": (
        ["--identities", "2", "--slots", "1", "--loads", "1,2", "--registrations", "10", "--batch", "5",
         "--proof-requests", "10", "--concurrency", "2", "--batch-interval", "0.5", "--poll-interval", "0.2",
         "--out", "{tmp}/http.json", "--json"],
        ["verify_bare.per_second", "authorize.per_second", "authorize_load", "register_single.per_second",
         "register_single_load", "register_batch.per_second", "merkle_proofs.per_second", "anchoring.seconds_after_load", "plots"],
    ),
    # The relay's and the large group's benchmarks (their owners may name more keys).
    "bench_e2e": (["--blobs", "2", "--identities", "1"], []),
    "bench_relay": (["--identities", "1", "--slots", "2", "--rates", "5", "--senders", "1", "--recipients", "1",
                     "--workers", "1", "--out", "{tmp}/relay.json"],
                    ["verify_ceiling.threads_per_s", "verify_ceiling.processes_per_s", "points", "best_blobs_per_s",
                     "evidence.pending_at_end"]),
    "bench_group_scale": (["--members", "200", "--delta", "20", "--proofs", "10", "--inserts", "5", "--no-rebuild"], []),
    # Replicas on a real PostgreSQL: one failover round, a proof or two per set-up.
    "bench_replicas": (["--identities", "1", "--slots", "2", "--registrations", "4", "--concurrency", "2",
                        "--failovers", "1", "--claims", "10", "--json", "--out", "{tmp}/replicas.json"],
                       ["setups.sqlite.authorize.per_second", "setups.postgresql_1.register.per_second",
                        "setups.postgresql_2.authorize.per_second", "nullifier_claims.postgresql.p99_ms",
                        "nullifier_claims.sqlite.p99_ms", "failover.median_anchored_after_s", "machine.load_average_end"]),
}

#: Keys whose numbers may be negative (a gas difference against Semaphore).
SIGNED_KEYS = {"delta"}


def _get(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        assert isinstance(doc, dict) and part in doc, f"missing key {dotted!r}"
        doc = doc[part]
    return doc


def _numbers(doc: Any, path: str = "") -> list[tuple[str, float]]:
    """Every number in ``doc`` with its dotted path, keys in SIGNED_KEYS left out."""
    if isinstance(doc, bool) or doc is None or isinstance(doc, str):
        return []
    if isinstance(doc, (int, float)):
        return [(path, float(doc))]
    if isinstance(doc, dict):
        return [n for k, v in doc.items() if k not in SIGNED_KEYS for n in _numbers(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [n for i, v in enumerate(doc) for n in _numbers(v, f"{path}[{i}]")]
    raise AssertionError(f"unexpected JSON value at {path}: {type(doc).__name__}")


def _run(name: str, args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc


def test_every_benchmark_has_a_smoke_case() -> None:
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert scripts == set(CASES), "add a tiny case for each benchmark (and drop removed ones)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_tiny(name: str, tmp_path: Path) -> None:
    args, keys = CASES[name]
    doc = _run(name, [a.replace("{tmp}", str(tmp_path)) for a in args])
    for key in keys:
        _get(doc, key)
    numbers = _numbers(doc)
    assert numbers, "the benchmark printed no figures"
    bad = [(p, v) for p, v in numbers if not math.isfinite(v) or v < 0]
    assert not bad, f"negative or non-finite figures: {bad[:5]}"
    for png in (doc.get("plots") or {}).values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if name == "bench_registry_http":
        assert json.loads((tmp_path / "http.json").read_text()) == doc
        for profile in ("authorize_load", "register_single_load"):
            assert [p["offered"] for p in doc[profile]] == [1, 2]
            assert all(p["ok"] == p["requests"] > 0 for p in doc[profile]), doc[profile]
        assert doc["merkle_proofs"]["ok"] == doc["merkle_proofs"]["requests"]  # every member was indexed
    if name == "bench_replicas":  # correctness held on every set-up: each proof once, each registration once
        assert json.loads((tmp_path / "replicas.json").read_text()) == doc
        assert set(doc["setups"]) == {"sqlite", "postgresql_1", "postgresql_2"}
        for setup in doc["setups"].values():
            assert setup["authorize"]["every_proof_once"] is True and setup["register"]["on_chain_exactly_once"] is True
        assert len(doc["failover"]["rounds"]) == 1


def test_wait_for_proofs_returns_once_every_member_is_indexed(tmp_path: Path) -> None:
    """Regression: the HTTP benchmark asked for Merkle proofs once /v1/health looked
    settled, before the index held the batch (404). It now waits for the proofs."""
    from benchmarks.bench_registry_http import wait_for_proofs
    from tests.support.registry import running_registry
    from zk.identity import Identity

    with running_registry(tmp_path / "reg") as registry:
        members = [Identity(f"smoke-{i}").commitment for i in range(5)]
        registry.service.register(0, members)
        wait_for_proofs(registry.url, [str(c) for c in members], 120, "the members")
        with registry.client() as http:
            assert all(http.get(f"/v1/groups/0/proofs/{c}").status_code == 200 for c in members)
        with pytest.raises(RuntimeError):  # a refusal other than "not indexed yet" is not waited out
            wait_for_proofs(registry.url, ["not-a-commitment"], 120, "a malformed commitment")


def test_plot_load_profile_writes_a_png(tmp_path: Path) -> None:
    points = [
        {"offered": 1, "per_second": 100.0, "p50_ms": 9.0, "p99_ms": 12.0},
        {"offered": 16, "per_second": 400.0, "p50_ms": 30.0, "p99_ms": 90.0},
        {"offered": 4, "per_second": 300.0, "p50_ms": 12.0, "p99_ms": 20.0},
    ]
    out = plot_load_profile(points, "test", tmp_path / "sub" / "x.png", ceiling=500.0, latency_target_ms=50.0)
    assert out == tmp_path / "sub" / "x.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "points",
    [[], [{"offered": 1, "per_second": 1.0, "p50_ms": 1.0}], [{"offered": 1, "per_second": -1.0, "p50_ms": 1.0, "p99_ms": 1.0}]],
)
def test_plot_load_profile_refuses_bad_points(points: list[dict[str, float]], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_load_profile(points, "test", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
