"""The explorer in a real headless Chromium (@sparticuz/chromium + puppeteer-core, from
``npm ci``) against a real registry: Anvil, the deployed contracts, the service threads,
uvicorn on loopback, registrations batched on chain and evidence records anchored.

Each page loads without console errors and shows the API's figures; the member lookup
finds a registered commitment (by keyboard); the in-browser bundle verifier gives the
verdict of ``zkid evidence verify --rpc-url`` on a valid bundle and on each kind of
tampering, also after the registry stopped (the page then needs only the ledger, read
cross-origin from Anvil, whose CORS default allows any origin). Screenshots go to
``test-artifacts/explorer/`` (ignored by git)."""

from __future__ import annotations

import base64
import contextlib
import copy
import fcntl
import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.ledger.anvil import AnvilProcess
from registry.ledger.deploy import Manifest, save_manifest
from registry.service.facade import RegistryService
from tests.registry.evidence.support import RELAY, RELAY_KEY
from tests.support.registry import AUTH, running_registry
from tests.support.wait import wait_until
from zk.evidence.bundle import Anchor, build_bundle
from zk.evidence.record import EventType, EvidenceRecord, sign_record

ROOT = Path(__file__).resolve().parents[4]
ARTIFACTS = ROOT / "test-artifacts" / "explorer"
DRIVER = Path(__file__).with_name("browser.mjs")
COMMITMENTS = [0x1111_2222_3333_4444_5555 + i for i in range(5)]
EVENTS = [EventType.RELAY_ACCEPTANCE, EventType.CONTENT_CONSIGNMENT, EventType.CONTENT_HANDOVER]


class Browser:
    """The node driver (browser.mjs): one Chromium for the module."""

    def __init__(self) -> None:
        # The first launch unpacks Chromium to /tmp; another xdist worker must not start a
        # half-written binary meanwhile: launches are serialised by a lock file.
        with open(Path(tempfile.gettempdir()) / "letro-zkid-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.proc = subprocess.Popen(["node", str(DRIVER)], cwd=ROOT, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            hello = self._read()
        assert hello.get("ready"), hello

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the browser driver exited"
        answer: dict[str, Any] = json.loads(line)
        assert "exception" not in answer, answer["exception"]
        return answer

    def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self("close")
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class World:
    url: str
    anvil: AnvilProcess
    manifest: Manifest
    manifest_dir: Path
    vkey: str
    bundle: dict[str, Any]  # the blob's three records (accepted, consigned, picked up)
    single: dict[str, Any]  # the registry's bundle of the first record (GET /v1/evidence/{id}/bundle)
    stop_registry: Any


def _records(chain_id: int) -> list[dict[str, Any]]:
    blob = hashlib.sha256(b"explorer test blob").digest()
    now = int(time.time())
    return [json.loads(sign_record(EvidenceRecord(chain_id=chain_id, event=event, event_time=now - 30 + 10 * i,
                                                  issuer=RELAY, blob_digest=blob, region="eu-west"),
                                   RELAY_KEY).to_json()) for i, event in enumerate(EVENTS)]


def _populate(url: str, chain_id: int) -> tuple[str, dict[str, Any]]:
    """Two registration batches, three evidence records of one blob, anchored; the bundle."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for batch in (COMMITMENTS[:2], COMMITMENTS[2:]):
            r = http.post("/v1/groups/0/members", json={"commitments": [str(c) for c in batch]}, headers=AUTH)
            assert r.status_code == 202, r.text
            wait_until(lambda b=batch: all(  # type: ignore[misc]
                http.get(f"/v1/groups/0/members/{c}").json().get("index") is not None for c in b), 60, "batch")
        r = http.post("/v1/evidence/batch", json={"records": _records(chain_id)})
        assert r.status_code == 201, r.text
        first = r.json()["results"][0]["evidence_id"]
        wait_until(lambda: http.get(f"/v1/evidence/{first}/bundle").status_code == 200, 60, "the anchor")
        vkey = http.get("/v1/explorer/overview").json()["evidence"]["log_key"]
        return vkey, http.get(f"/v1/evidence/{first}/bundle").json()


def _whole_delivery(service: RegistryService) -> dict[str, Any]:
    """A bundle of all three records against the anchored checkpoint, from the registry's log."""
    log = service.evidence
    assert log is not None
    stored = log.latest_anchor()
    assert stored is not None and stored.tree_size >= len(EVENTS)
    anchor = Anchor(stored.chain_id, stored.contract, stored.tx_hash, stored.block_number, stored.block_time,
                    stored.tree_size, stored.root_hash)
    entries = [(log.entry_at(i).signed, i) for i in range(len(EVENTS))]
    bundle = build_bundle(entries, log, log.checkpoint(stored.tree_size), anchor, log.verifier.vkey())
    data: dict[str, Any] = bundle.to_dict()
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The shared registry (tests/support/registry.py) with a relay key and anchoring at once;
    the last test stops its HTTP server alone (the ledger stays) to show the page needs no
    registry."""
    data_dir = tmp_path_factory.mktemp("explorer")
    with running_registry(data_dir, relay_keys=[RELAY], anchor_interval=0, anchor_min_growth=1,
                          anchor_max_delay=0.5) as registry:
        manifest_dir = save_manifest(data_dir / "verifier", registry.manifest)
        vkey, single = _populate(registry.url, registry.manifest.chain_id)
        yield World(registry.url, registry.anvil, registry.manifest, manifest_dir, vkey,
                    _whole_delivery(registry.service), single, registry.stop_serving)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    b = Browser()
    yield b
    b.close()


def _text(browser: Browser, selector: str) -> str:
    return str(browser("eval", expr=f"document.querySelector({json.dumps(selector)}).textContent.trim()")["value"])


def test_pages_load_without_errors_and_show_the_api_figures(world: World, browser: Browser) -> None:
    with httpx.Client(base_url=world.url) as http:
        overview = http.get("/v1/explorer/overview").json()
        batches = http.get("/v1/explorer/batches").json()["batches"]
        groups = http.get("/v1/groups").json()
    for path, shot in [("", "overview"), ("/groups", "groups"), ("/groups/0", "group-0"), ("/batches", "batches"),
                       ("/charts", "charts"), ("/verify", "verify")]:
        loaded = browser("goto", url=f"{world.url}/explorer{path}", screenshot=str(ARTIFACTS / f"{shot}.png"))
        assert loaded["errors"] == [], (path, loaded["errors"])
        assert "letro-zkid explorer" in loaded["title"]
        assert (ARTIFACTS / f"{shot}.png").stat().st_size > 0
        if path == "":
            assert _text(browser, "[data-field=chain_id]") == str(overview["chain_id"]) == str(world.manifest.chain_id)
            assert _text(browser, "[data-field=evidence_size]") == str(overview["evidence"]["size"]) == "3"
            assert _text(browser, "[data-field=groups]") == str(overview["groups"])
        elif path == "/groups/0":
            assert _text(browser, "[data-field=size]") == str(groups["groups"][0]["size"]) == str(len(COMMITMENTS))
        elif path == "/batches":
            rows = browser("eval", expr="[...document.querySelectorAll('#batches tbody tr')].map(r => [r.cells[0].textContent, +r.cells[4].textContent, +r.cells[5].textContent])")["value"]
            assert rows == [[b["tx_hash"], b["members"], b["gas_used"]] for b in batches]
            assert sum(b["members"] for b in batches) == len(COMMITMENTS) and all(b["gas_used"] > 0 for b in batches)
            assert browser("eval", expr="document.querySelectorAll('#anchors tbody tr').length")["value"] >= 1
        elif path == "/charts":
            assert browser("eval", expr="document.documentElement.dataset.chartsReady")["value"] == "true"
            assert browser("eval", expr="document.querySelectorAll('figure svg.chart').length")["value"] >= 2
            gas = browser("eval", expr="[...document.querySelectorAll('#chart-gas tbody tr')].map(r => [...r.cells].map(c => +c.textContent))")["value"]
            assert gas == [[b["members"], b["gas_per_member"]] for b in reversed(batches)]
    # The member lookup, by keyboard only: Tab to the field, type the commitment, press Enter.
    browser("goto", url=f"{world.url}/explorer/groups/0")
    assert browser("tab_to", id="commitment", max=30)["tabs"] is not None
    typed = browser("press", selector="#commitment", text=str(COMMITMENTS[3]), key="Enter")
    assert typed["errors"] == []
    status = browser("eval", expr="document.getElementById('lookup-result').dataset.status")["value"]
    assert status in ("included", "final")
    assert batches[0]["tx_hash"] in _text(browser, "#lookup-result")
    browser("goto", url=f"{world.url}/explorer/groups/0?commitment=12345")
    assert browser("eval", expr="document.getElementById('lookup-result').dataset.status")["value"] == "not_found"
    # Without JavaScript the pages are their tables (no chart drawn, no error).
    browser("javascript", enabled=False)
    try:
        loaded = browser("goto", url=f"{world.url}/explorer/charts", screenshot=str(ARTIFACTS / "charts-no-js.png"))
        assert loaded["errors"] == []
        assert browser("eval", expr="document.querySelectorAll('#chart-gas tbody tr').length")["value"] == len(batches)
        assert browser("eval", expr="document.querySelectorAll('svg').length")["value"] == 0
    finally:
        browser("javascript", enabled=True)
    # On a phone's screen no page scrolls sideways (wide tables scroll inside their box).
    browser("viewport", width=390, height=844)
    try:
        for path in ("", "/groups/0", "/batches", "/verify"):
            browser("goto", url=f"{world.url}/explorer{path}", screenshot=str(ARTIFACTS / f"phone{path.replace('/', '-')}.png"))
            assert browser("eval", expr="document.documentElement.scrollWidth <= window.innerWidth")["value"], path
    finally:
        browser("viewport", width=1100, height=900)


def test_hostile_input_security_headers_and_the_registrys_own_trusted_values(world: World, browser: Browser) -> None:
    """Attacks on the pages: every response forbids inline script, other hosts and framing
    (CSP, nosniff); a hostile member lookup (a superscript digit, 5000 digits: a 500
    before, from int(); Arabic-Indic digits: looked up as 12 before) is a plain "invalid",
    escaped; a verdict resting on the trusted values the registry prefilled about itself
    is never shown as plain VALID (a lying registry would vouch for its own forgery); the
    node's genesis block is checked against the trusted one, as the CLI does."""
    with httpx.Client(base_url=world.url, timeout=30) as http:
        for path in ("/explorer", "/explorer/groups", "/explorer/groups/0", "/explorer/batches", "/explorer/charts",
                     "/explorer/verify", "/explorer/static/verify.js", "/explorer/vendor/noble-hashes/package.json"):
            r = http.get(path)
            assert r.status_code == 200, path
            policy = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, path
            assert "unsafe-inline" not in policy and "script-src 'self' 'sha256-" in policy, path
            assert r.headers["x-content-type-options"] == "nosniff", path
            head = http.head(path)  # (uptime checks send HEAD: it was a 405 on the pages)
            assert head.status_code == 200 and head.content == b"", path
        for typed in ("\u00b2", "9" * 5000, "\u0661\u0662", '"><script>alert(1)</script>', "0123", "-5"):
            r = http.get("/explorer/groups/0", params={"commitment": typed})
            assert r.status_code == 200, (typed[:10], r.text[:200])
            assert 'data-status="invalid"' in r.text and "<script>alert" not in r.text, typed[:10]
        # The counter samples a chart view takes keep the minute, not the second of the view.
        samples = http.get("/v1/explorer/charts").json()["counters"]
        assert samples and all(sample["time"] % 60 == 0 for sample in samples)
    browser("goto", url=f"{world.url}/explorer/verify")
    # The CSP holds in the browser: an injected inline script does not run.
    ran = browser("eval", expr="(() => { const s = document.createElement('script'); s.textContent = 'window.pwned = 1';"
                               " document.body.append(s); return window.pwned ?? null; })()")["value"]
    assert ran is None
    assert browser("goto", url=f"{world.url}/explorer/verify")["errors"] == []  # (clears the CSP report)
    assert browser("eval", expr="document.documentElement.dataset.verifierReady")["value"] == "true"
    # Only the bundle and the ledger URL given: the rest is the registry's word about itself.
    fields = {"bundle": json.dumps(world.bundle), "rpc-url": world.anvil.rpc_url}
    answer = browser("verify", fields=fields)
    assert answer["errors"] == [], answer["errors"]
    assert answer["verdict"]["valid"] and answer["verdict"]["text"].startswith("VALID ONLY AGAINST THE REGISTRY")
    assert "Log key" in answer["verdict"]["text"]
    shown = browser("eval", expr="[document.getElementById('verdict').dataset.trust, document.getElementById('verdict').className]")
    assert shown["value"] == ["registry", "warn"]
    # The visitor types (here: pastes the same, having checked them) each trusted value.
    browser("eval", expr="['log-key', 'chain-id', 'anchor-contract', 'relay-keys'].forEach((id) =>"
                         " document.getElementById(id).dispatchEvent(new Event('input')))")
    answer = browser("verify", fields=fields)
    assert answer["verdict"]["text"].startswith("VALID: every check passed against your trusted values")
    shown = browser("eval", expr="[document.getElementById('verdict').dataset.trust, document.getElementById('verdict').className]")
    assert shown["value"] == ["visitor", "good"]
    assert _text(browser, "#timeline caption") == "Delivery timeline"
    # A node on another chain with the same chain id: its genesis block gives it away (as in the CLI).
    answer = browser("verify", fields={**fields, "genesis-hash": "0x" + "ab" * 32})
    assert answer["verdict"]["firstFailure"] == "anchor_on_ledger"
    assert "genesis" in [c for c in answer["verdict"]["checks"] if c["name"] == "anchor_on_ledger"][0]["detail"]
    browser("eval", expr="document.getElementById('genesis-hash').value = document.getElementById('genesis-hash').defaultValue")
    # A forged bundle's timeline is still listed, but as its claim.
    answer = browser("verify", fields={**fields, "bundle": json.dumps(_tampered(world.bundle)["record"])})
    assert answer["verdict"]["firstFailure"] == "record_signature"
    assert "not verified" in _text(browser, "#timeline caption")
    # A time no Date can hold (below 2^53, so well-formed) still gets its verdict shown.
    far = copy.deepcopy(world.bundle)
    far["anchor"]["blockTime"] = 2**53 - 1
    answer = browser("verify", fields={**fields, "bundle": json.dumps(far)})
    assert answer["verdict"]["state"] == "done" and answer["verdict"]["firstFailure"] == "anchor_on_ledger", answer


def _tampered(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One bundle per kind of tampering."""
    out: dict[str, dict[str, Any]] = {}
    b = copy.deepcopy(bundle)
    b["entries"][0]["record"]["eventTime"] -= 3600  # the record: its signature no longer recovers
    out["record"] = b
    b = copy.deepcopy(bundle)
    sig = b["entries"][0]["signature"]
    b["entries"][0]["signature"] = sig[:10] + ("1" if sig[10] != "1" else "2") + sig[11:]
    out["signature"] = b
    b = copy.deepcopy(bundle)
    lines = b["entries"][0]["tlogProof"].split("\n")
    lines[2] = "A" * 43 + "="  # the first inclusion path hash
    b["entries"][0]["tlogProof"] = "\n".join(lines)
    out["inclusion"] = b
    b = copy.deepcopy(bundle)
    for entry in b["entries"]:  # every entry is proven against the same checkpoint
        head, _, signature = entry["tlogProof"].rpartition(" ")  # the checkpoint's signature line
        raw = bytearray(base64.b64decode(signature))
        raw[10] ^= 1
        entry["tlogProof"] = head + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    out["checkpoint"] = b
    b = copy.deepcopy(bundle)
    b["anchor"]["blockTime"] -= 60  # only the ledger can tell
    out["anchor"] = b
    return out


EXPECTED = {"valid": None, "valid-single": None, "record": "record_signature", "signature": "record_signature",
            "inclusion": "inclusion_proof", "checkpoint": "checkpoint_signature", "anchor": "anchor_on_ledger"}


def _cli_verdict(world: World, path: Path) -> dict[str, Any]:
    from registry.cli import app as zkid_app
    from tests.support.cli import invoke

    result = invoke(zkid_app, ["evidence", "verify", str(path), "--rpc-url", world.anvil.rpc_url, "--manifest",
                               str(world.manifest_dir), "--log-key", world.vkey, "--trusted-relay", RELAY, "--json"])
    verdict: dict[str, Any] = json.loads(result.stdout)
    return verdict


def _page_verdict(world: World, browser: Browser, bundle: dict[str, Any], shot: str) -> dict[str, Any]:
    fields = {"bundle": json.dumps(bundle), "log-key": world.vkey, "chain-id": str(world.manifest.chain_id),
              "anchor-contract": world.manifest.address("EvidenceAnchor"), "relay-keys": RELAY,
              "rpc-url": world.anvil.rpc_url}
    # Screenshots cost about a second each: the valid and the ledger-only verdicts only.
    keep = shot.startswith("valid") or shot.startswith("anchor")
    answer = browser("verify", fields=fields, **({"screenshot": str(ARTIFACTS / f"verify-{shot}.png")} if keep else {}))
    assert answer["errors"] == [], answer["errors"]
    verdict: dict[str, Any] = answer["verdict"]
    assert verdict["state"] == "done", verdict["text"]
    return verdict


def test_the_page_verdict_is_the_cli_verdict_also_with_the_registry_stopped(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    bundles = {"valid": world.bundle, "valid-single": world.single, **_tampered(world.bundle)}
    assert browser("goto", url=f"{world.url}/explorer/verify")["errors"] == []
    for name, bundle in bundles.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(bundle))
        cli, page = _cli_verdict(world, path), _page_verdict(world, browser, bundle, name)
        assert "firstFailure" in cli, (name, cli)
        assert cli["firstFailure"] == page["firstFailure"] == EXPECTED[name], (name, cli, page)
        assert cli["valid"] == page["valid"] == name.startswith("valid")
        assert [(c["name"], c["status"]) for c in cli["checks"]] == [(c["name"], c["status"]) for c in page["checks"]], name
    # The delivery timeline of the valid bundle: the records' events and the anchor, in time order.
    valid = _page_verdict(world, browser, world.bundle, "valid")
    events = [(e["record"]["eventTime"], e["record"]["event"]) for e in world.bundle["entries"]]
    expected = [label for _, label in sorted([*events, (world.bundle["anchor"]["blockTime"], "Anchored")],
                                             key=lambda e: e[0])]
    assert valid["timeline"] == expected and "ContentHandover" in expected and len(expected) == 4

    # The registry goes away; the loaded page still verifies, reading only the ledger.
    world.stop_registry()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{world.url}/v1/health", timeout=2)
    again = _page_verdict(world, browser, world.bundle, "valid-registry-stopped")
    assert again["valid"] and again["firstFailure"] is None
    forged = _page_verdict(world, browser, _tampered(world.bundle)["anchor"], "anchor-registry-stopped")
    assert forged["firstFailure"] == "anchor_on_ledger" and not forged["valid"]
