"""The explorer's in-browser verifier (registry/web/explorer/static/verify.js), run in Node
without a browser, against the Python reference: the same record hashes (EIP-712), log
ids (``logIdOf``) and key parsing, and the same offline verdict as
:func:`zk.evidence.bundle.verify_bundle` on a real log's bundles, valid and tampered (the
ledger checks are the browser tests' part: tests/registry/web/explorer/test_explorer_browser.py)."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from registry.ledger.anchor_contract import log_id
from tests.registry.evidence.support import CHAIN_ID, RELAY, RELAY_KEY, make_records, open_log
from zk.evidence.bundle import Anchor, TrustedAnchor, build_bundle, verify_bundle
from zk.evidence.record import EventType, EvidenceRecord, ReasonCode, sign_record

ROOT = Path(__file__).resolve().parents[4]
VERIFY_JS = ROOT / "registry" / "web" / "explorer" / "static" / "verify.js"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

# Reads a JSON job on stdin, answers on stdout (verify.js is an ES module over @noble).
SCRIPT = f"""
import fs from "node:fs";
import * as v from {json.dumps(VERIFY_JS.as_uri())};
const job = JSON.parse(fs.readFileSync(0, "utf8"));
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const out = {{
  hashes: job.records.map((r) => hex(v.recordHash({{ ...r, blob: Uint8Array.from(Buffer.from(r.blobDigest.slice(2), "hex")),
    linkBytes: r.links.map((l) => Uint8Array.from(Buffer.from(l.slice(2), "hex"))) }}))),
  logId: hex(v.logId(job.origin, v.parseVkey(job.vkey).publicKey)),
  checksum: v.checksum(job.address.toLowerCase()),
  verdicts: [],
}};
for (const b of job.bundles) out.verdicts.push(await v.verifyBundle(b, {{ logKey: job.vkey, relayKeys: job.relays,
  anchor: {{ chainId: job.chainId, contract: job.contract }}, rpcUrl: null }}));
console.log(JSON.stringify(out));
"""


def run_js(job: dict[str, Any]) -> dict[str, Any]:
    r = subprocess.run(["node", "--input-type=module", "-e", SCRIPT], input=json.dumps(job), capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    answer: dict[str, Any] = json.loads(r.stdout)
    return answer


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    log = open_log(tmp_path_factory.mktemp("log"), "letro-zkid/js-test/evidence")
    try:
        signed = make_records(5)
        odd = EvidenceRecord(chain_id=CHAIN_ID, event=EventType.RELAY_FAILURE, event_time=1_700_000_100, issuer=RELAY,
                             blob_digest=signed[0].record.blob_digest, region="eu-west", reason=ReasonCode.UNREACHABLE,
                             links=(signed[0].record.record_hash(),))
        signed.append(sign_record(odd, RELAY_KEY))
        log.append_many(signed)
        size = log.size
        anchor = Anchor(CHAIN_ID, CONTRACT, b"\x01" * 32, 7, 1_700_000_200, size - 1, log.root(size - 1))
        valid = build_bundle([(signed[2], 2)], log, log.checkpoint(size), anchor, log.verifier.vkey()).to_dict()
        bundles = {"valid": valid, **_tampered(valid)}
        job = {"records": [s.record.to_dict() for s in signed], "origin": log.origin, "vkey": log.verifier.vkey(),
               "address": RELAY, "relays": [RELAY], "chainId": CHAIN_ID, "contract": CONTRACT,
               "bundles": [json.dumps(b) for b in bundles.values()]}
        python = {
            "hashes": [s.record.record_hash().hex() for s in signed],
            "logId": log_id(log.origin, log.verifier.public_key).hex(),
            "verdicts": {name: verify_bundle(json.dumps(b), log.verifier.vkey(), None, trusted_issuers=[RELAY],
                                             trusted_anchor=TrustedAnchor(CHAIN_ID, CONTRACT))
                         for name, b in bundles.items()},
            "names": list(bundles),
        }
        return python, run_js(job)
    finally:
        log.close()


def _tampered(valid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    b = copy.deepcopy(valid)
    b["entries"][0]["record"]["region"] = "us-east"
    out["record"] = b
    b = copy.deepcopy(valid)
    lines = b["entries"][0]["tlogProof"].split("\n")
    lines[2] = "A" * 43 + "="
    b["entries"][0]["tlogProof"] = "\n".join(lines)
    out["inclusion"] = b
    b = copy.deepcopy(valid)
    b["consistency"]["proof"] = b["consistency"]["proof"][:-1] or ["A" * 43 + "="]
    out["consistency"] = b
    b = copy.deepcopy(valid)
    b["anchor"]["contract"] = "0x0000000000000000000000000000000000000001"
    out["contract"] = b
    b = copy.deepcopy(valid)
    b["entries"][0]["signature"] = b["entries"][0]["signature"][:-2] + "1d"  # v = 29: unreadable
    out["format"] = b
    return out


def test_record_hashes_and_log_id_equal_the_python_reference(answers: tuple[dict[str, Any], dict[str, Any]]) -> None:
    python, js = answers
    assert js["hashes"] == python["hashes"]  # EIP-712, with links and a reason code too
    assert js["logId"] == python["logId"]  # EvidenceAnchor.logIdOf
    assert js["checksum"] == RELAY  # EIP-55


def test_offline_verdicts_equal_verify_bundle(answers: tuple[dict[str, Any], dict[str, Any]]) -> None:
    python, js = answers
    for name, page in zip(python["names"], js["verdicts"], strict=True):
        reference = python["verdicts"][name]
        assert page["firstFailure"] == reference.first_failure, (name, page)
        assert [(c["name"], c["status"]) for c in page["checks"]] == [(c.name, c.status) for c in reference.checks], name
        assert page["valid"] is reference.valid is False  # no ledger lookup: never valid offline
    statuses = {c["name"]: c["status"] for c in js["verdicts"][0]["checks"]}
    assert statuses["anchor_on_ledger"] == "not_checked" and statuses["consistency_with_anchor"] == "ok"
    assert [v["firstFailure"] for v in js["verdicts"]] == [None, "record_signature", "inclusion_proof",
                                                           "consistency_with_anchor", "anchor_contract", "format"]


HOSTILE_SCRIPT = f"""
import fs from "node:fs";
import * as v from {json.dumps(VERIFY_JS.as_uri())};
const job = JSON.parse(fs.readFileSync(0, "utf8"));
const out = [];
for (const text of job.bundles) {{
  try {{
    const r = await v.verifyBundle(text, {{ logKey: job.vkey, relayKeys: null, anchor: null, rpcUrl: null }});
    out.push({{ firstFailure: r.firstFailure, valid: r.valid }});
  }} catch (e) {{ out.push({{ threw: `${{e.name}}: ${{e.message}}` }}); }}
}}
console.log(JSON.stringify({{ verdicts: out, polluted: ({{}}).polluted ?? null }}));
"""


def test_hostile_bundles_fail_as_format_or_a_check_never_crash_the_verifier(
    answers: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    """A pasted bundle is hostile input: a megabyte of base64 in the checkpoint's signature
    (String.fromCharCode(...bytes) used to overflow the stack: "Cannot run the checks"),
    prototype-pollution keys, deep nesting, a number beyond 2^53, and what JSON.parse lets
    through but the CLI's strict parser refuses (a repeated key, 1.0 for 1, an
    acknowledgement that is not one): each gets verify_bundle's verdict, and
    Object.prototype stays clean."""
    log = open_log(tmp_path, "letro-zkid/js-hostile/evidence")
    try:
        signed = make_records(2)
        log.append_many(signed)
        anchor = Anchor(CHAIN_ID, CONTRACT, b"\x01" * 32, 7, 1_700_000_200, log.size, log.root(log.size))
        valid = build_bundle([(signed[0], 0)], log, log.checkpoint(log.size), anchor, log.verifier.vkey()).to_dict()
        vkey = log.verifier.vkey()
    finally:
        log.close()
    huge = copy.deepcopy(valid)
    head, _, _ = huge["entries"][0]["tlogProof"].rpartition(" ")
    huge["entries"][0]["tlogProof"] = head + " " + base64.b64encode(b"\x07" * 1_000_000).decode() + "\n"
    texts = {
        "huge-signature": json.dumps(huge),
        "proto": json.dumps(valid)[:-1] + ', "__proto__": {"polluted": true}}',
        "proto-record": json.dumps(valid).replace('"record": {', '"record": {"__proto__": {"polluted": true}, ', 1),
        "deep": "[" * 200_000 + "]" * 200_000,
        "big-number": json.dumps(valid).replace('"version": 1', '"version": 1e400', 1),
        # What JSON.parse accepts and the CLI's strict parser refuses: the same verdict (format).
        "repeated-key": json.dumps(valid).replace('"version": 1,', '"version": 2, "vers\\u0069on": 1,', 1),
        "fraction": json.dumps(valid).replace('"version": 1,', '"version": 1.0,', 1),
        "exponent": json.dumps(valid).replace('"version": 1,', '"version": 1E0,', 1),
        "too-deep": json.dumps(valid)[:-1] + ', "x": ' + "[" * 70 + "]" * 70 + "}",
        "acknowledgement-false": json.dumps({**valid, "acknowledgement": False}),
        "acknowledgement-untyped": json.dumps({**valid, "acknowledgement": {"recordHash": "0x00"}}),
    }
    r = subprocess.run(["node", "--input-type=module", "-e", HOSTILE_SCRIPT], capture_output=True, text=True, cwd=ROOT,
                       input=json.dumps({"vkey": vkey, "bundles": list(texts.values())}), timeout=120)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["polluted"] is None
    for (name, text), page in zip(texts.items(), answer["verdicts"], strict=True):
        assert "threw" not in page, (name, page)
        reference = verify_bundle(text, vkey, None) if name != "deep" else None
        expected = "format" if reference is None else reference.first_failure
        assert page["firstFailure"] == expected and page["valid"] is False, (name, page, expected)
