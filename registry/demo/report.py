"""The demo's summary (``--json``) and its closing table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from registry.demo.regions import SEND_GROUP

if TYPE_CHECKING:
    from rich.console import Console

    from registry.demo.scenario import Scenario, Sent


def _merged_checks(bundles: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each bundle check's status over the regions: ``ok`` only where every region's is."""
    merged: dict[str, str] = {}
    for found in bundles.values():
        for name, status in found.get("bundle_checks", {}).items():
            merged[name] = status if merged.get(name, "ok") == "ok" else merged[name]
    return merged


def _regions(sc: Scenario, admissions: list[dict[str, Any]], sent: list[Sent], logs: dict[str, Any], bundles: dict[str, Any]) -> dict[str, Any]:
    return {
        region.name: {
            "chain_id": region.chain_id,
            "registry_contract": region.manifest.address("ZkIdRegistry"),
            "data_dir": str(region.root),
            "clients": len(region.identities),
            "admission": admission,
            "accepted_from": sum(1 for s in sent if s.home is region),
            "accepted_to": sum(1 for s in sent if s.to is region),
            "accepted_cross_region": sum(1 for s in sent if s.home is region and s.to is not region),
            **logs[region.name],
            **bundles[region.name],
        }
        for region, admission in zip(sc.regions, admissions)
    }


def summary(
    sc: Scenario, admissions: list[dict[str, Any]], sent: list[Sent], delivered: int, exactly_once: bool,
    logs: dict[str, dict[str, Any]], bundles: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The last expectations, and the run's summary: the counts over all regions (the keys
    of the one-registry demo) and the same per region under ``regions``."""
    from registry.demo.scenario import REFUSAL_REASONS

    o = sc.outcomes
    refused = {reason: o.refused.get(reason, 0) for reason in REFUSAL_REASONS}
    other = {k: v for k, v in o.refused.items() if k not in REFUSAL_REASONS}
    sc.check("every_send_accepted_or_refused_as_expected", all(x["expected"] == x["got"] for x in o.refusals))
    sc.check("each_refusal_reason_seen", all(refused[r] > 0 for r in REFUSAL_REASONS) and not other)
    sc.check("every_accepted_blob_delivered", delivered == o.accepted and o.accepted > 0)
    regions = _regions(sc, admissions, sent, logs, bundles)
    first = sc.regions[0].name
    result: dict[str, Any] = {
        "mode": "regions",
        "clients": sc.n_clients,
        "group_id": SEND_GROUP,
        "admission": {
            "policy": "zk",
            "admission_group": admissions[0]["admission_group"],
            "checked_persons": sum(a["checked_persons"] for a in admissions),
            "admitted": sum(a["admitted"] for a in admissions),
            "second_registration": admissions[0]["second_registration"] if len({a["second_registration"] for a in admissions}) == 1 else "mixed",
        },
        "message_limit": sc.regions[0].message_limit,
        "relays": [{"region": r.region, "auth": dict(r.auth), "registries": r.listed} for r in sc.relays],
        "sent": o.sent,
        "accepted": o.accepted,
        "accepted_cross_region": sum(1 for s in sent if s.home is not s.to),
        "refused": refused,
        "refused_other": other,
        "refusals": o.refusals,
        "delivered": delivered,
        "delivered_exactly_once": exactly_once,
        "evidence_records": sum(r["evidence_records"] for r in regions.values()),
        "expected_evidence_records": sum(r["expected_evidence_records"] for r in regions.values()),
        "anchored_size": sum(r["anchored_size"] for r in regions.values()),
        "anchor_block": {name: r["anchor_block"] for name, r in regions.items()},
        "bundle_valid": all(r["bundle_valid"] for r in regions.values()),
        "bundle_checks": _merged_checks(bundles),
        "bundle_file": regions[first].get("bundle_file"),
        "regions": regions,
        "proofs_generated": sc.proofs,
        "proof_seconds": round(sc.proof_seconds, 3),
        "phases": sc.phases,
        "seconds": round(time.perf_counter() - sc.t0, 3),
        "expectations": sc.expect,
    }
    result["ok"] = all(sc.expect.values())
    return result


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="outcomes")
    table.add_column("what")
    table.add_column("count / value", justify="right")
    table.add_row("sent", str(summary["sent"]))
    table.add_row("accepted (across regions)", f"{summary['accepted']} ({summary['accepted_cross_region']})")
    for reason, count in summary["refused"].items():
        table.add_row(f"refused: {reason}", str(count))
    table.add_row("delivered (picked up, acknowledged)", str(summary["delivered"]))
    table.add_row("delivered exactly once", str(summary["delivered_exactly_once"]))
    for name, region in summary["regions"].items():
        table.add_row(f"{name}: evidence records / anchored size", f"{region['evidence_records']} / {region['anchored_size']}")
        table.add_row(f"{name}: bundle valid on chain {region['chain_id']}", str(region["bundle_valid"]))
    table.add_row("proofs generated", f"{summary['proofs_generated']} in {summary['proof_seconds']:.1f} s")
    table.add_row("total time", f"{summary['seconds']:.1f} s")
    console.print(table)
    failed = [k for k, v in summary["expectations"].items() if not v]
    if failed:
        console.print(f"[bold red]expectations failed:[/bold red] {', '.join(failed)}")
    else:
        console.print(f"[bold green]all {len(summary['expectations'])} expectations hold[/bold green]")
