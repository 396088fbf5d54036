"""``zkid evidence bundle|verify``: fetch and check delivery-evidence bundles.

``verify`` runs :func:`zk.evidence.bundle.verify_bundle` against the verifier's own
trusted values, never the bundle's (docs/evidence.md, "Trust model"):

- the log key: ``--log-key`` (or ``logKey`` of a ``--trust`` file);
- the chain and the EvidenceAnchor contract: ``--manifest`` (a deployment.json) or a
  ``--trust`` file; the bundle's claim is compared with them (``anchor_contract``);
- ledger access: ``--rpc-url``; the node must be on the trusted chain, and the anchor is
  read from the trusted contract;
- the relay keys: ``--trusted-relay ADDRESS`` (repeatable) or ``relayKeys``;
- the trusted groups, for an acknowledgement: ``--trusted-group ID`` (repeatable) or
  ``groups``; their roots and members are read from the trusted ZkIdRegistry.

A missing trust input is a usage error (exit 2) unless ``--no-trust-anchors`` is given;
then the checks run with what was given, the output names what was not anchored in trust,
and exit 0 means only that no check failed. Exit codes: 0 valid, 1 invalid (the first
failed check is named), 2 unreadable input, unusable options or missing trust inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from registry.cli._common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, fail, print_json, read_file

if TYPE_CHECKING:  # the evidence stack imports eth-account: only the commands load it
    from registry.client import RegistryClient
    from zk.evidence.bundle import AnchorLookup, EvidenceBundle, GroupRootCheck, MemberCheck, TrustedAnchor, Verdict
    from zk.evidence.note import NoteVerifier

#: Seconds between the progress lines of `evidence bundle --wait` (it asks every 5 s).
PROGRESS_EVERY = 30.0

evidence_app = typer.Typer(name="evidence", help="Delivery-evidence bundles: fetch and verify.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(evidence_app, name="evidence")


@evidence_app.command("bundle")
def bundle_command(
    evidence_id: Annotated[str, typer.Argument(help="Evidence id (64 hex digits).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle JSON.")],
    url: Annotated[
        Optional[str], typer.Option("--url", help="Registry URL (default: $ZKID_URL or http://127.0.0.1:9545).", show_default=False)
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="anchored (default) or latest.")] = "anchored",
    wait: Annotated[bool, typer.Option("--wait", help="If the record is not anchored yet, wait until it is (progress on stderr).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits at most.", min=0)] = 900.0,
) -> None:
    """Fetch the evidence bundle of a record from a registry.

    A record is in a bundle once an anchor on the ledger covers it: within the registry's
    anchor_max_delay (300 s by default, docs/settings.md) of reaching its log. Before that
    the command says how long until then (exit 1), or waits for it with --wait."""
    import time

    from registry.cli.service_commands import _url
    from registry.client import RegistryClient
    from zk.evidence.bundle import BundleError, EvidenceBundle

    url = _url(url)
    deadline = time.monotonic() + timeout
    shown_at = -PROGRESS_EVERY
    with RegistryClient(url) as client:
        while (content := _fetch_bundle(client, url, evidence_id, checkpoint)) is None:
            when = _anchor_eta(client)
            if not wait:
                fail(f"not_anchored: the record is not covered by an anchor yet; {when}: run again then, or add --wait",
                     EXIT_INVALID)
            if time.monotonic() > deadline:
                fail(f"not_anchored: the record is still not covered by an anchor after {timeout:g} s; {when}", EXIT_INVALID)
            if time.monotonic() - shown_at >= PROGRESS_EVERY:  # asked every 5 s, said every 30 s
                typer.echo(f"waiting for the anchor: {when}", err=True)
                shown_at = time.monotonic()
            time.sleep(5.0)
    try:
        EvidenceBundle.from_json(content)
    except (BundleError, ValueError) as exc:
        fail(f"the registry sent a malformed bundle: {exc}")
    out.write_bytes(content)
    typer.echo(f"wrote {out}")


def _fetch_bundle(client: RegistryClient, url: str, evidence_id: str, checkpoint: str) -> bytes | None:
    """The bundle's bytes, or None while the record is ``not_anchored``; any other failure
    ends the command with one line (exit 2)."""
    from registry.client import RegistryClientError

    try:
        return client.evidence_bundle(evidence_id, checkpoint)
    except RegistryClientError as exc:
        if exc.status == 0:
            fail(f"cannot reach {url}: {exc.message}")
        if exc.status == 409 and exc.code == "not_anchored":
            return None
        if exc.status == 404 and exc.code == "not_found":
            fail(
                f"not_found: the evidence log at {url} has no record {evidence_id} (yet): a relay posts its records "
                "in batches, and keeps them queued while its key is not registered with the registry (the relay's "
                "/v1/health shows evidence_pending and evidence_unregistered_key); run again later"
            )
        code = "" if exc.code == "http_error" else exc.code  # http_error: no error object
        fail(f"the registry answered {exc.status} {code}".strip())


def _anchor_eta(client: RegistryClient) -> str:
    """When the registry's next anchor is due, from its health (``evidence.anchor_due_in``)."""
    from registry.client import RegistryClientError

    try:
        evidence = client.health().get("evidence") or {}
    except (RegistryClientError, AttributeError):
        evidence = {}
    if not isinstance(evidence, dict):
        evidence = {}
    due, longest = evidence.get("anchor_due_in"), evidence.get("anchor_max_delay")
    if isinstance(due, (int, float)):
        return f"the next anchor is due in about {max(due, 0):.0f} s"
    if isinstance(longest, (int, float)):
        return f"the registry anchors a record within {longest:g} s"
    return "the registry anchors a record within its anchor_max_delay (300 s by default)"


@dataclass
class Trust:
    """The verifier's trusted values and where each came from (never from the bundle)."""

    log_key: NoteVerifier | None = None
    log_key_source: str = ""
    chain_id: int | None = None
    anchor_contract: str | None = None
    registry_contract: str | None = None
    genesis_hash: str | None = None
    anchor_source: str = ""
    relay_keys: list[str] = field(default_factory=list)
    relay_sources: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    group_sources: list[str] = field(default_factory=list)

    def trusted_anchor(self) -> TrustedAnchor | None:
        from zk.evidence.bundle import TrustedAnchor

        if self.chain_id is None or self.anchor_contract is None:
            return None
        return TrustedAnchor(self.chain_id, self.anchor_contract)


@dataclass(frozen=True)
class LedgerChecks:
    """Reads of the verifier's own contracts: the anchor lookup and the group checks."""

    anchor_lookup: AnchorLookup | None
    group_root_check: GroupRootCheck | None
    member_check: MemberCheck | None


def _address(value: object, what: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    if not isinstance(value, str) or not is_address(value):
        fail(f"{what}: {value!r} is not an Ethereum address")
    return str(to_checksum_address(value))


def _set_once(trust: Trust, attr: str, value: object, source: str, what: str) -> None:
    current = getattr(trust, attr)
    if current is not None and current != value:
        fail(f"{what} differs between the trust inputs ({source} and an earlier one)")
    setattr(trust, attr, value)


_TRUST_KEYS = {"logKey", "chainId", "anchorContract", "registryContract", "genesisHash", "relayKeys", "groups"}


def _read_trust_file(path: Path, trust: Trust) -> None:
    """A trust list (docs/evidence.md): JSON with any of :data:`_TRUST_KEYS`."""
    from zk.evidence.note import NoteError, NoteVerifier
    from zk.strict_json import JsonInputError
    from zk.strict_json import loads as loads_strict

    try:
        data = loads_strict(path.read_bytes())
    except (OSError, JsonInputError) as exc:
        fail(f"cannot read the trust file {path}: {exc}")
    if not isinstance(data, dict) or not set(data) <= _TRUST_KEYS:
        fail(f"the trust file {path} is a JSON object with keys among {', '.join(sorted(_TRUST_KEYS))}")
    source = f"trust file {path}"
    if "logKey" in data:
        try:
            trust.log_key = NoteVerifier.from_vkey(data["logKey"])
        except (NoteError, TypeError, AttributeError) as exc:
            fail(f"{source}: bad logKey: {exc}")
        trust.log_key_source = source
    if "chainId" in data or "anchorContract" in data:
        chain = data.get("chainId")
        if isinstance(chain, bool) or not isinstance(chain, int) or chain < 1 or "anchorContract" not in data:
            fail(f"{source}: chainId (a positive integer) and anchorContract go together")
        trust.chain_id, trust.anchor_contract = chain, _address(data["anchorContract"], f"{source}: anchorContract")
        trust.anchor_source = source
    if "registryContract" in data:
        trust.registry_contract = _address(data["registryContract"], f"{source}: registryContract")
    if "genesisHash" in data:
        trust.genesis_hash = str(data["genesisHash"]).lower()
    keys = data.get("relayKeys", [])
    groups = data.get("groups", [])
    if not isinstance(keys, list) or not isinstance(groups, list):
        fail(f"{source}: relayKeys and groups are lists")
    trust.relay_keys += [_address(k, f"{source}: relayKeys") for k in keys]
    if keys:
        trust.relay_sources.append(source)
    if any(isinstance(g, bool) or not isinstance(g, int) or g < 0 for g in groups):
        fail(f"{source}: groups are non-negative integers (group ids)")
    trust.groups += groups
    if groups:
        trust.group_sources.append(source)


def _read_manifest(path: Path, trust: Trust) -> None:
    from registry.ledger.deploy import read_manifest
    from registry.ledger.errors import DeploymentError

    try:
        manifest = read_manifest(path)  # strictly (zk/strict_json.py)
        anchor, registry = manifest.address("EvidenceAnchor"), manifest.address("ZkIdRegistry")
    except DeploymentError as exc:
        fail(f"cannot read the manifest: {exc}")
    source = f"manifest {path}"
    _set_once(trust, "chain_id", manifest.chain_id, source, "the chain id")
    _set_once(trust, "anchor_contract", _address(anchor, source), source, "the anchor contract")
    _set_once(trust, "registry_contract", _address(registry, source), source, "the registry contract")
    trust.genesis_hash = manifest.genesis_hash.lower()
    trust.anchor_source = source if not trust.anchor_source else f"{trust.anchor_source} and {source}"


def ledger_checks(rpc_url: str, trust: Trust) -> LedgerChecks:
    """Lookups on the trusted contracts through ``rpc_url``; each first checks that the
    node is on the trusted chain (chain id, and genesis hash when the manifest gives it)."""
    from hexbytes import HexBytes

    from registry.ledger.anchor_contract import AnchorContract, log_id
    from registry.ledger.anvil import make_web3
    from registry.ledger.registry_contract import RegistryContract

    w3 = make_web3(rpc_url, timeout=30.0, retry=False)
    checked: list[bool] = []

    def on_trusted_chain() -> None:
        if checked:
            return
        chain = int(w3.eth.chain_id)
        if chain != trust.chain_id:
            raise ValueError(f"the node is on chain {chain}, the trusted chain is {trust.chain_id}")
        if trust.genesis_hash is not None:
            genesis = HexBytes(w3.eth.get_block(0)["hash"]).to_0x_hex().lower()
            if genesis != trust.genesis_hash:
                raise ValueError("the node's genesis block is not the trusted chain's")
        checked.append(True)

    lookup: AnchorLookup | None = None
    if trust.anchor_contract is not None and trust.chain_id is not None and trust.log_key is not None:
        anchor = AnchorContract(w3, trust.anchor_contract)
        public_key = trust.log_key.public_key

        def lookup(origin: str, tree_size: int) -> tuple[bytes, int] | None:
            # The log id binds the origin to the trusted log key (EvidenceAnchor.logIdOf).
            on_trusted_chain()
            found = anchor.get_anchor(log_id(origin, public_key), tree_size)
            return None if found is None else (found.root_hash, found.timestamp)

    if trust.registry_contract is None or not trust.groups or trust.chain_id is None:
        return LedgerChecks(lookup, None, None)
    registry = RegistryContract(w3, trust.registry_contract)
    groups = sorted(set(trust.groups))

    def root_check(root: int, event_time: int) -> bool:
        # Valid at the acknowledged record's time (isRootValid's rule, applied at that time,
        # not now): current, or superseded no earlier than event_time - the root window. A
        # later check still passes; a root superseded long before the record does not.
        on_trusted_chain()
        for g in groups:
            if registry.root(g) == root and root != 0:
                return True
            superseded = registry.root_superseded_at(g, root)
            if superseded != 0 and superseded + registry.group(g).root_window >= event_time:
                return True
        return False

    def member_check(commitment: int) -> bool:
        on_trusted_chain()
        return any(registry.has_member(g, commitment) for g in groups)

    return LedgerChecks(lookup, root_check, member_check)


def _missing_trust(trust: Trust, bundle: EvidenceBundle, rpc_url: str | None) -> list[str]:
    missing = []
    if trust.log_key is None:
        missing.append("log key (--log-key)")
    if trust.trusted_anchor() is None:
        missing.append("anchor contract and chain (--manifest or --trust)")
    if rpc_url is None:
        missing.append("ledger access (--rpc-url)")
    if not trust.relay_keys:
        missing.append("relay keys (--trusted-relay)")
    if bundle.acknowledgement is not None:
        if not trust.groups:
            missing.append("groups for the acknowledgement (--trusted-group)")
        elif trust.registry_contract is None:
            missing.append("registry contract of the trusted groups (--manifest, or registryContract in --trust)")
    return missing


def _trust_dict(trust: Trust, rpc_url: str | None) -> dict[str, Any]:
    via = f"; read via {rpc_url}" if rpc_url is not None else "; not read (no --rpc-url)"
    return {
        "logKey": None if trust.log_key is None else {
            "value": f"{trust.log_key.name}+{trust.log_key.key_id:08x}", "source": trust.log_key_source},
        "anchorContract": None if trust.trusted_anchor() is None else {
            "value": trust.anchor_contract, "chainId": trust.chain_id, "source": trust.anchor_source + via},
        "relayKeys": None if not trust.relay_keys else {
            "value": sorted(set(trust.relay_keys)), "source": ", ".join(trust.relay_sources)},
        "groupRoots": None if not trust.groups else {
            "value": sorted(set(trust.groups)), "registryContract": trust.registry_contract,
            "source": ", ".join(trust.group_sources) + via},
    }


def _records_dict(bundle: EvidenceBundle, trust: Trust) -> list[dict[str, Any]]:
    trusted = {k.lower() for k in trust.relay_keys}
    return [
        {
            "index": e.proof.index,
            "evidenceId": e.signed.record.evidence_id(),
            "event": e.signed.record.event.value,
            "eventTime": e.signed.record.event_time,
            "issuer": e.signed.record.issuer,
            "issuerTrusted": (e.signed.record.issuer.lower() in trusted) if trust.relay_keys else None,
        }
        for e in bundle.entries
    ]


def _verdict_dict(verdict: Verdict, key_source: str) -> dict[str, Any]:
    return {
        "valid": verdict.valid,
        "complete": verdict.complete,
        "passed": verdict.passed,
        "firstFailure": verdict.first_failure,
        "missingTrust": list(verdict.missing_trust),
        "logKeySource": key_source,
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "missingTrust": c.missing_trust}
                   for c in verdict.checks],
        "timeline": [{"time": e.time, "label": e.label, "reference": e.reference} for e in verdict.timeline],
    }


def _headline(verdict: Verdict, nothing_trusted: bool) -> str:
    if verdict.first_failure is not None:
        return f"INVALID: {verdict.first_failure}"
    if verdict.missing_trust:
        what = "nothing was anchored in trust" if nothing_trusted else (
            "not anchored in trust: " + ", ".join(verdict.missing_trust))
        return f"NOT VERIFIED: no check failed, but {what} (--no-trust-anchors)"
    return "VALID" + ("" if verdict.complete else " (some checks not run)")


@evidence_app.command("verify")
def verify_command(
    file: Annotated[Path, typer.Argument(help="The bundle JSON file.")],
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", help="Ledger RPC for the anchor and group checks.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Your deployment.json: the trusted chain, anchor and registry contracts.")] = None,
    log_key: Annotated[str | None, typer.Option("--log-key", help="Trusted log verifier key (vkey).")] = None,
    trusted_relay: Annotated[list[str] | None, typer.Option("--trusted-relay", help="A trusted relay key (address); repeatable.")] = None,
    trusted_group: Annotated[list[int] | None, typer.Option("--trusted-group", help="A trusted group id (for acknowledgements); repeatable.")] = None,
    trust_file: Annotated[Path | None, typer.Option("--trust", help="A trust list (JSON, docs/evidence.md).")] = None,
    no_trust_anchors: Annotated[bool, typer.Option("--no-trust-anchors", help="Run the checks without (some) trust inputs; nothing missing is trusted.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable verdict.")] = False,
) -> None:
    """Verify an evidence bundle against your own trust inputs; exit 0 valid, 1 invalid, 2 unusable."""
    from zk.evidence.bundle import verify_bundle
    from zk.evidence.note import NoteVerifier

    bundle = _read_bundle(file)
    trust = _gather_trust(trust_file, manifest, log_key, trusted_relay, trusted_group)
    missing = _missing_trust(trust, bundle, rpc_url)
    if missing and not no_trust_anchors:
        fail("no trusted " + "; ".join(missing) + ": a bundle proves nothing to a third party without them "
             "(docs/evidence.md, Trust model); give them, or --no-trust-anchors to run the checks anyway")
    nothing_trusted = trust.log_key is None and trust.trusted_anchor() is None and not trust.relay_keys and not trust.groups
    if trust.log_key is None:  # only with --no-trust-anchors: checks run, nothing is trusted
        trust.log_key, trust.log_key_source = NoteVerifier.from_vkey(bundle.log_key), "bundle (not trusted)"
    checks = ledger_checks(rpc_url, trust) if rpc_url is not None else LedgerChecks(None, None, None)
    verdict = verify_bundle(
        bundle, trust.log_key, checks.anchor_lookup,
        trusted_issuers=trust.relay_keys if trust.relay_keys else None,
        group_root_check=checks.group_root_check, member_check=checks.member_check,
        trusted_anchor=trust.trusted_anchor(),
    )
    records = _records_dict(bundle, trust)
    if as_json:
        out = _verdict_dict(verdict, trust.log_key_source)
        out["trust"] = _trust_dict(trust, rpc_url)
        out["anchoredInTrust"] = not verdict.missing_trust and trust.log_key_source != "bundle (not trusted)"
        out["records"] = records
        print_json(out)
    else:
        _print_verdict(verdict, nothing_trusted, _trust_dict(trust, rpc_url), records)
    if verdict.first_failure is not None:
        raise typer.Exit(EXIT_INVALID)
    # A check without its trusted value passes only when the user asked for that explicitly.
    raise typer.Exit(EXIT_OK if verdict.valid or no_trust_anchors else EXIT_INVALID)


def _read_bundle(file: Path) -> EvidenceBundle:
    from zk.evidence.bundle import BundleError, EvidenceBundle

    text = read_file(file)
    try:
        return EvidenceBundle.from_json(text)
    except (BundleError, ValueError) as exc:
        fail(f"{file} is not a readable evidence bundle: {exc}")


def _gather_trust(
    trust_file: Path | None, manifest: Path | None, log_key: str | None, trusted_relay: list[str] | None,
    trusted_group: list[int] | None,
) -> Trust:
    """The verifier's trust inputs from ``--trust``, ``--manifest`` and the flags (never the bundle)."""
    from zk.evidence.note import NoteError, NoteVerifier

    trust = Trust()
    if trust_file is not None:
        _read_trust_file(trust_file, trust)
    if manifest is not None:
        _read_manifest(manifest, trust)
    if log_key is not None:
        try:
            verifier = NoteVerifier.from_vkey(log_key)
        except NoteError as exc:
            fail(f"bad --log-key: {exc}")
        if trust.log_key is not None and trust.log_key != verifier:
            fail("--log-key differs from the trust file's logKey")
        trust.log_key, trust.log_key_source = verifier, "--log-key"
    if trusted_relay:
        trust.relay_keys += [_address(a, "--trusted-relay") for a in trusted_relay]
        trust.relay_sources.append("--trusted-relay")
    if trusted_group:
        if any(g < 0 for g in trusted_group):
            fail("--trusted-group takes a group id (a non-negative integer)")
        trust.groups += trusted_group
        trust.group_sources.append("--trusted-group")
    return trust


def _print_verdict(verdict: Verdict, nothing_trusted: bool, trusted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """The text verdict: headline, trusted values, records, checks, timeline."""
    typer.echo(_headline(verdict, nothing_trusted))
    typer.echo("trusted values:")
    for name, entry in trusted.items():
        if entry is None:
            typer.echo(f"  {name}: none (not anchored in trust)")
        else:
            value = entry["value"] if isinstance(entry["value"], str) else ", ".join(map(str, entry["value"]))
            typer.echo(f"  {name}: {value} (from {entry['source']})")
    typer.echo("records:")
    for r in records:
        who = {True: "trusted relay key", False: "NOT a trusted relay key", None: "not checked"}[r["issuerTrusted"]]
        typer.echo(f"  #{r['index']:<6} {r['event']:<26} issuer {r['issuer']} ({who})")
    typer.echo("checks:")
    for c in verdict.checks:
        typer.echo(f"  [{c.status:>11}] {c.name}: {c.detail}")
    typer.echo("timeline:")
    for e in verdict.timeline:
        typer.echo(f"  {e.time}  {e.label:<26} {e.reference}")


__all__ = ["register", "evidence_app", "EXIT_USAGE"]
