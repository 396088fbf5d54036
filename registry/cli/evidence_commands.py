"""``zkid evidence bundle|verify``: fetch and check delivery-evidence bundles.

``verify`` runs :func:`zk.evidence.bundle.verify_bundle`. The trusted log key is
``--log-key`` (a signed-note verifier key); without it the bundle's own ``logKey`` is
used and the verdict says so (trust on first use). With ``--rpc-url`` the
``anchor_on_ledger`` check reads the EvidenceAnchor contract: its address from
``--manifest`` (a deployment.json), else the bundle's anchor reference; the node's
chain id must equal the anchor's.

Exit codes: 0 valid, 1 invalid (the first failed check is named), 2 unreadable input
or unusable options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from registry.cli._common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, fail, print_json
from zk.evidence.bundle import AnchorLookup, BundleError, EvidenceBundle, Verdict, verify_bundle
from zk.evidence.note import NoteError, NoteVerifier

evidence_app = typer.Typer(name="evidence", help="Delivery-evidence bundles: fetch and verify.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(evidence_app, name="evidence")


@evidence_app.command("bundle")
def bundle_command(
    evidence_id: Annotated[str, typer.Argument(help="Evidence id (64 hex digits).")],
    url: Annotated[str, typer.Option("--url", help="Registry base URL, e.g. http://127.0.0.1:8080.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle JSON.")],
    checkpoint: Annotated[str, typer.Option(help="anchored (default) or latest.")] = "anchored",
) -> None:
    """Fetch the evidence bundle of a record from a registry."""
    try:
        resp = httpx.get(f"{url.rstrip('/')}/v1/evidence/{evidence_id}/bundle",
                         params={"checkpoint": checkpoint}, timeout=30.0)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")
    if resp.status_code != 200:
        try:
            code = resp.json().get("error", {}).get("code", "")
        except ValueError:
            code = ""
        fail(f"the registry answered {resp.status_code} {code}".strip())
    try:
        EvidenceBundle.from_json(resp.content)
    except (BundleError, ValueError) as exc:
        fail(f"the registry sent a malformed bundle: {exc}")
    out.write_bytes(resp.content)
    typer.echo(f"wrote {out}")


def _ledger_lookup(rpc_url: str, bundle: EvidenceBundle, manifest: Path | None) -> AnchorLookup:
    from registry.ledger.anchor_contract import AnchorContract
    from registry.ledger.anvil import make_web3
    from registry.ledger.deploy import Manifest
    from registry.ledger.errors import DeploymentError

    if manifest is not None:
        try:
            address = Manifest.from_json(json.loads(manifest.read_text())).address("EvidenceAnchor")
        except (OSError, ValueError, DeploymentError) as exc:
            fail(f"cannot read the manifest {manifest}: {exc}")
    else:
        address = bundle.anchor.contract
    w3 = make_web3(rpc_url, timeout=30.0, retry=False)
    contract = AnchorContract(w3, address)

    def lookup(origin: str, tree_size: int) -> tuple[bytes, int] | None:
        chain = int(w3.eth.chain_id)
        if chain != bundle.anchor.chain_id:
            raise ValueError(f"the node is on chain {chain}, the anchor on chain {bundle.anchor.chain_id}")
        found = contract.get_anchor(origin, tree_size)
        return None if found is None else (found.root_hash, found.timestamp)

    return lookup


def _verdict_json(verdict: Verdict, key_source: str) -> dict[str, Any]:
    return {
        "valid": verdict.valid,
        "complete": verdict.complete,
        "firstFailure": verdict.first_failure,
        "logKeySource": key_source,
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in verdict.checks],
        "timeline": [{"time": e.time, "label": e.label, "reference": e.reference} for e in verdict.timeline],
    }


@evidence_app.command("verify")
def verify_command(
    file: Annotated[Path, typer.Argument(help="The bundle JSON file.")],
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", help="Ledger RPC for the anchor_on_ledger check.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="deployment.json naming the anchor contract.")] = None,
    log_key: Annotated[str | None, typer.Option("--log-key", help="Trusted log verifier key (vkey).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable verdict.")] = False,
) -> None:
    """Verify an evidence bundle; exit 0 valid, 1 invalid, 2 unreadable."""
    try:
        text = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc}")
    try:
        bundle = EvidenceBundle.from_json(text)
    except (BundleError, ValueError) as exc:
        fail(f"{file} is not a readable evidence bundle: {exc}")
    key_source = "option"
    try:
        trusted = NoteVerifier.from_vkey(log_key) if log_key is not None else NoteVerifier.from_vkey(bundle.log_key)
    except NoteError as exc:
        fail(f"bad --log-key: {exc}")
    if log_key is None:
        key_source = "bundle (not independently trusted)"
    lookup = _ledger_lookup(rpc_url, bundle, manifest) if rpc_url is not None else None
    verdict = verify_bundle(bundle, trusted, lookup)
    if as_json:
        print_json(_verdict_json(verdict, key_source))
    else:
        typer.echo(("VALID" if verdict.valid else f"INVALID: {verdict.first_failure}")
                   + ("" if verdict.complete or not verdict.valid else " (some checks not run)"))
        typer.echo(f"log key: {trusted.name}+{trusted.key_id:08x} (from {key_source})")
        for c in verdict.checks:
            typer.echo(f"  [{c.status:>11}] {c.name}: {c.detail}")
        typer.echo("timeline:")
        for e in verdict.timeline:
            typer.echo(f"  {e.time}  {e.label:<26} {e.reference}")
    raise typer.Exit(EXIT_OK if verdict.valid else EXIT_INVALID)


__all__ = ["register", "evidence_app", "EXIT_USAGE"]
