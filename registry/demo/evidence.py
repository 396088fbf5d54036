"""The demo's evidence, per region: each relay posts a blob's records to the log of the
blob's home registry (the sender's), each log is anchored on its own ledger, and one
bundle per region is verified against that region's ledger alone, with the checks of
``zkid evidence verify --rpc-url``."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from registry.demo.regions import SEND_GROUP, Region

if TYPE_CHECKING:
    from registry.demo.scenario import Scenario, Sent


def _log_sizes(sc: Scenario) -> tuple[int, dict[str, tuple[int, int]]]:
    """Records still queued at the relays, and each registry's log (size, anchored size)."""
    from registry.client.messaging import relay_health

    pending = sum(int(relay_health(r.http).get("evidence_pending") or 0) for r in sc.relays)
    logs: dict[str, tuple[int, int]] = {}
    for region in sc.regions:
        health = region.http.health().get("evidence") or {}
        logs[region.name] = (int(health.get("size") or 0), int(health.get("anchored_size") or 0))
    return pending, logs


def wait_for_logs(sc: Scenario) -> dict[str, dict[str, Any]]:
    """Wait until every record reached its home log and each log is anchored; per region:
    records, expected records, anchored size, anchor block."""
    expected = sc.outcomes.records
    with sc.phase("evidence"):
        deadline = time.monotonic() + 90
        while True:
            pending, logs = _log_sizes(sc)
            done = all(size >= expected[name] and anchored == size for name, (size, anchored) in logs.items())
            if (pending == 0 and done) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    out: dict[str, dict[str, Any]] = {}
    for region in sc.regions:
        size, anchored = logs[region.name]
        sc.check(f"{region.name}:evidence_records_logged", size == expected[region.name])
        sc.check(f"{region.name}:evidence_anchored", anchored > 0 and anchored == size)
        latest = region.service.evidence.latest_anchor() if region.service.evidence is not None else None
        sc.say(region.name, f"evidence log: {size} records (its senders' blobs, from every relay); checkpoint anchored at size {anchored}")
        if latest is not None:
            sc.say("ledger", f"{region.name}: EvidenceAnchor size {latest.tree_size} root {latest.root_hash.hex()[:16]}… in block {latest.block_number}")
        out[region.name] = {
            "evidence_records": size,
            "expected_evidence_records": expected[region.name],
            "anchored_size": anchored,
            "anchor_block": None if latest is None else latest.block_number,
        }
    return out


def _chosen(region: Region, sent: list[Sent]) -> Sent | None:
    """A blob between two clients of ``region`` carried by a relay abroad: its record and
    the recipient's acknowledgement are both checked on ``region``'s ledger."""
    return next((s for s in sent if s.home is region and s.to is region and s.evidence_id), None)


def bundle(sc: Scenario, region: Region, sent: list[Sent]) -> dict[str, Any]:
    """Fetch one record's bundle from ``region``'s log, attach the recipient's
    acknowledgement, save it and verify it against ``region``'s ledger."""
    from zk.evidence.bundle import EvidenceBundle, verify_bundle

    from registry.cli.evidence_commands import Trust, ledger_checks
    from registry.client.api import RegistryClientError, acknowledge
    from registry.client.messaging import relay_health

    invalid: dict[str, Any] = {"bundle_valid": False, "bundle_checks": {}}
    with sc.phase("bundle"):
        chosen = _chosen(region, sent)
        if chosen is None or chosen.evidence_id is None or region.service.evidence is None:
            sc.check(f"{region.name}:bundle_valid", False)
            return invalid
        try:
            content = region.http.evidence_bundle(chosen.evidence_id, "anchored")
        except RegistryClientError as exc:
            sc.check(f"{region.name}:bundle_valid", False)
            sc.say(region.name, f"bundle fetch failed: HTTP {exc.status} {exc.code}", "bold red")
            return invalid
        # The recipient acknowledges the acceptance record with its ZK-ID key.
        ack = acknowledge(bytes.fromhex(chosen.evidence_id), chosen.to.identities[chosen.recipient])
        found = replace(EvidenceBundle.from_json(content), acknowledgement=ack)
        path = sc.root / f"bundle-{region.name}.json"
        path.write_text(found.to_json())
        issuers = {relay_health(r.http)["issuer"] for r in sc.relays}
        trusted = region.service.evidence.verifier  # the log key of this region's registry
        # As `zkid evidence verify` with this region's manifest: the anchor is read from its
        # EvidenceAnchor, the acknowledgement's signer from its send group's members.
        m = region.manifest
        trust = Trust(log_key=trusted, chain_id=m.chain_id, anchor_contract=m.address("EvidenceAnchor"),
                      registry_contract=m.address("ZkIdRegistry"), genesis_hash=m.genesis_hash.lower(), groups=[SEND_GROUP])
        ledger = ledger_checks(region.rpc_url, trust)
        verdict = verify_bundle(found, trusted, ledger.anchor_lookup, trusted_issuers=issuers,
                                group_root_check=ledger.group_root_check, member_check=ledger.member_check,
                                trusted_anchor=trust.trusted_anchor())
    valid = verdict.valid and verdict.complete
    sc.check(f"{region.name}:bundle_valid", valid)
    shown = "VALID" if verdict.valid else "INVALID: " + str(verdict.first_failure)
    sc.say("verifier", f"{region.name} bundle of blob {chosen.blob_id[:8]}… (relay {chosen.relay.region}), on chain {region.chain_id}: {shown}",
           "green" if verdict.valid else "bold red")
    for c in verdict.checks:
        sc.say("verifier", f"  {c.status:<11} {c.name}: {c.detail}", "dim")
    return {
        "bundle_valid": valid,
        "bundle_checks": {c.name: c.status for c in verdict.checks},
        "bundle_file": str(path),
        "bundle_relay": chosen.relay.region,
    }
