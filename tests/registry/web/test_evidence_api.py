"""The evidence HTTP routes over real HTTP (uvicorn on loopback), a real Anvil for the
anchors, and ``zkid evidence bundle|verify`` as subprocesses (``-p tests.fixtures.anvil``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from registry.evidence.anchorer import Anchorer
from registry.evidence.admission import EvidenceAdmission
from registry.web.routes.evidence import evidence_router
from registry.evidence.log import EvidenceLog
from registry.ledger.anchor_contract import AnchorContract
from registry.ledger.deploy import save_manifest
from registry.ledger.tx import Transactor
from tests.registry.evidence.support import CHAIN_ID, RELAY, make_records, open_log
from tests.support.cli import run_zkid as zkid
from tests.support.net import serve_app
from zk.evidence import merkle
from zk.evidence.bundle import verify_bundle
from zk.evidence.note import open_checkpoint
from zk.evidence.proof_format import parse_tlog_proof, verify_tlog_proof

RECORDS = make_records(12)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[EvidenceLog, str]]:
    origin = f"letro-zkid/api{abs(hash(str(tmp_path))) % 10**8}/evidence"
    log = open_log(tmp_path, origin)
    app = FastAPI()
    # The test records' relay is registered; "now" is their era (2023).
    admission = EvidenceAdmission(CHAIN_ID, [RELAY], log, clock=lambda: 1_700_000_000.0)
    app.include_router(evidence_router(log, admission=admission))
    with serve_app(app) as url:
        yield log, url
    log.close()


def test_post_get_round_trip_and_errors(served: tuple[EvidenceLog, str]) -> None:
    log, url = served
    with httpx.Client(base_url=url) as http:
        r = http.post("/v1/evidence", content=RECORDS[0].to_json())
        assert r.status_code == 201
        body = r.json()
        assert body["index"] == 0 and body["evidence_id"] == RECORDS[0].record.evidence_id()
        cp, _ = open_checkpoint(body["checkpoint"], [log.verifier], origin=log.origin)
        assert cp.size == 1
        assert http.post("/v1/evidence", content=RECORDS[0].to_json()).status_code == 200  # idempotent
        r = http.post("/v1/evidence/batch", json={"records": [x.to_dict() for x in RECORDS[1:9]]})
        assert r.status_code == 201 and [x["index"] for x in r.json()["results"]] == list(range(1, 9))
        # Errors carry machine-readable codes; nothing is appended.
        assert http.post("/v1/evidence", content=b"{not json").json()["error"]["code"] == "malformed_record"
        bad = dict(RECORDS[9].to_dict(), signature="0x" + RECORDS[10].signature.hex())
        r = http.post("/v1/evidence", json=bad)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_signature")
        r = http.post("/v1/evidence/batch", json={"records": [RECORDS[9].to_dict(), bad]})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_signature")
        assert http.post("/v1/evidence", content=b"x" * 70_000).status_code == 413
        assert log.size == 9
        # GET by id: the tlog-proof verifies against the served checkpoint.
        r = http.get(f"/v1/evidence/{RECORDS[4].record.evidence_id()}")
        assert r.status_code == 200
        got = r.json()
        assert got["index"] == 4 and got["record"] == RECORDS[4].record.to_dict() and got["anchor"] is None
        proof = parse_tlog_proof(got["tlogProof"])
        assert verify_tlog_proof(proof, RECORDS[4].record.leaf_hash(), [log.verifier], log.origin).size == 9
        assert http.get(f"/v1/evidence/{'ab' * 32}").json()["error"]["code"] == "not_found"
        assert http.get("/v1/evidence/xyz").status_code == 422  # not an evidence id: schema error
        r = http.get("/v1/log/checkpoint")
        assert r.headers["content-type"].startswith("text/plain") and r.text == log.checkpoint()
        r = http.get("/v1/log/consistency", params={"from": 3, "to": 9})
        proof_hashes = [bytes.fromhex(h) for h in r.json()["proof"]]
        merkle.check_consistency(3, 9, log.root(3), log.root(9), proof_hashes)
        r = http.get("/v1/log/consistency", params={"from": 5, "to": 99})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "bad_tree_size")
        r = http.get(f"/v1/evidence/{RECORDS[4].record.evidence_id()}/bundle")
        assert (r.status_code, r.json()["error"]["code"]) == (409, "not_anchored")


def test_bundle_cli_explains_a_record_not_in_the_log(served: tuple[EvidenceLog, str], tmp_path: Path) -> None:
    """``zkid evidence bundle`` for a record the log does not have (yet): one line saying why
    it may be missing and what to do, exit 2; the registry URL comes from $ZKID_URL like
    every other client command (no --url needed)."""
    import os

    log, url = served
    log.append_many(RECORDS[:1])
    out = tmp_path / "b.json"
    r = zkid("evidence", "bundle", "ab" * 32, "--out", str(out), env={**os.environ, "ZKID_URL": url})
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error: not_found:"), r.stderr
    assert "queued while its key is not registered" in lines[0] and "run again later" in lines[0]
    assert not out.exists()
    # Known but not anchored: exit 1, the time until the anchor is due.
    r = zkid("evidence", "bundle", RECORDS[0].record.evidence_id(), "--out", str(out), env={**os.environ, "ZKID_URL": url})
    assert r.returncode == 1 and "not_anchored" in r.stderr and "--wait" in r.stderr, r.stderr


def test_bundle_over_http_verifies_with_cli_against_anvil(
    tmp_path: Path, served: tuple[EvidenceLog, str], anvil: Any, deployed: Any, chain: Any,
    make_transactor: Callable[[int], Transactor],
) -> None:
    log, url = served
    contract = AnchorContract(anvil.w3, deployed.anchor.address, make_transactor(5))
    # Only the registrar (the deployer) registers logs, here for account 5 (docs/evidence.md).
    deployed.anchor.register_log(log.origin, log.verifier.public_key, owner=contract.tx.address)  # type: ignore[union-attr]
    log.append_many(RECORDS[:7])
    eid = RECORDS[5].record.evidence_id()
    # `--wait` on a record not yet anchored: waits (progress on stderr), then writes the bundle.
    import subprocess

    from tests.support.cli import ZKID

    waited = tmp_path / "bundle-waited.json"
    waiter = subprocess.Popen([*ZKID, "evidence", "bundle", eid, "--url", url, "--out", str(waited), "--wait",
                               "--timeout", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line = waiter.stderr.readline() if waiter.stderr is not None else ""
        assert wait_for_line.startswith("waiting for the anchor"), wait_for_line
        assert not waited.exists()
        assert Anchorer(log, contract, min_growth=1).anchor_once().status == "anchored"
        stdout, stderr = waiter.communicate(timeout=300)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0 and stdout.startswith("wrote"), stderr
    assert verify_bundle(waited.read_text(), log.verifier.vkey()).passed
    log.append_many(RECORDS[7:10])  # the anchored checkpoint is now older than the latest
    got = httpx.get(f"{url}/v1/evidence/{eid}").json()
    assert got["anchor"]["treeSize"] == 7 and got["anchor"]["blockNumber"] > 0

    manifest = save_manifest(tmp_path / "deploy", deployed.manifest)
    vkey = log.verifier.vkey()
    # The verifier's own trust inputs (docs/evidence.md, "Trust model").
    trust = ["--rpc-url", anvil.rpc_url, "--manifest", str(manifest), "--log-key", vkey, "--trusted-relay", RELAY]
    for mode in ("anchored", "latest"):
        out = tmp_path / f"bundle-{mode}.json"
        r = zkid("evidence", "bundle", eid, "--url", url, "--out", str(out), "--checkpoint", mode)
        assert r.returncode == 0, r.stderr
        assert verify_bundle(out.read_text(), vkey).passed
        r = zkid("evidence", "verify", str(out), *trust, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        verdict = json.loads(r.stdout)
        statuses = {c["name"]: c["status"] for c in verdict["checks"]}
        assert verdict["valid"] and statuses.pop("acknowledgement") == "not_checked"
        assert set(statuses.values()) == {"ok"} and "anchor_on_ledger" in statuses
    r = zkid("evidence", "verify", str(out), *trust)
    assert r.returncode == 0 and r.stdout.startswith("VALID") and "timeline:" in r.stdout

    bundle = json.loads(out.read_text())
    # A tampered inclusion path: the first failure is the inclusion proof.
    lines = bundle["entries"][0]["tlogProof"].split("\n")
    lines[2] = "A" * 43 + "="
    tampered = dict(bundle, entries=[dict(bundle["entries"][0], tlogProof="\n".join(lines))])
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    r = zkid("evidence", "verify", str(bad), *trust, "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["firstFailure"] == "inclusion_proof"
    # A forged anchor time passes every offline check; only the ledger catches it.
    forged = dict(bundle, anchor=dict(bundle["anchor"], blockTime=bundle["anchor"]["blockTime"] - 60))
    bad.write_text(json.dumps(forged))
    assert zkid("evidence", "verify", str(bad), "--log-key", vkey, "--no-trust-anchors").returncode == 0
    r = zkid("evidence", "verify", str(bad), *trust)
    assert r.returncode == 1 and r.stdout.startswith("INVALID: anchor_on_ledger")
    # Another log's key: the checkpoint signature fails.
    other = open_log(tmp_path / "other", log.origin).verifier.vkey()
    r = zkid("evidence", "verify", str(out), "--log-key", other, "--no-trust-anchors", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["firstFailure"] == "checkpoint_signature"
    # Unreadable input: exit 2.
    bad.write_text("{")
    assert zkid("evidence", "verify", str(bad)).returncode == 2
    assert zkid("evidence", "verify", str(tmp_path / "missing.json")).returncode == 2
    assert zkid("evidence", "bundle", "ab" * 32, "--url", url, "--out", str(bad)).returncode == 2
