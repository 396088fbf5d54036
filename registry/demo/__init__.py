"""``zkid demo``: the whole ZK-ID path end to end, across regions, on embedded local ledgers.

One command, nothing to configure (docs/regions.md). In a temporary data directory (or
``--data-dir``) and on free loopback ports it starts two regional registries, ``eu-central``
and ``gcc``, each on its own throw-away Anvil chain (distinct chain ids) with its own
contracts, database, evidence log and anchorer under ``<data dir>/<region>/``
(registry/demo/regions.py); then three relays, ``us-east``, ``eu-west`` and
``ap-southeast``, each with a trust list naming both registries and, per registry, how it
authorizes their senders: locally against that registry's ledger, claiming each nullifier
at the home registry, or by asking the registry. Then it plays the scenario with the real
components (registry/demo/scenario.py):

1. ``--clients`` identities, split between the regions, are admitted anonymously and
   registered in their region; each group is rebuilt from its own ledger's events;
2. clients of each region send blobs to clients of the other through the relay nearest
   the recipient, each with a send authorization bound to the sender's home registry
   (:func:`registry.client.api.build_send_authorization`, docs/authorization.md);
3. refusals, each for its reason and on both authorization paths: a sender over its
   per-epoch limit (``slot_out_of_range``), a proof replayed at every relay, including
   relays that check locally (``nullifier_reused``: its home registry is the nullifier
   authority), a non-member and a member of one region posing as the other's group
   (``unknown_root``), a proof moved to another blob (``message_mismatch``), a registry
   outside the trust list (``unknown_registry``);
4. recipients pick their blobs up with their capability and acknowledge them;
5. each region's evidence log gets the records of its senders' blobs from every relay and
   anchors a checkpoint on its own ledger; one bundle per region is fetched, the
   recipient's acknowledgement attached, and verified against that region's ledger alone.

``--json`` prints a summary with the count of each outcome over all regions and per region
(``regions``); the exit code is 0 only if every expectation holds. Everything started is
stopped at the end, also on error or Ctrl-C (exit 130).

``--offline`` runs the earlier walkthrough of the cryptography alone (no ledger, no
network): identities, a group, a proof, and the refusals from the registry's Authorizer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.demo.servers import DemoError
from registry.demo.servers import registry_service as _registry_service  # benchmarks/ use these two
from registry.demo.servers import serve as _serve

__all__ = ["_registry_service", "_serve", "demo", "register"]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    offline: Annotated[bool, typer.Option("--offline", help="Only the offline walkthrough of the cryptography (no ledger, no network).")] = False,
    clients: Annotated[int, typer.Option("--clients", min=8, max=1000, help="How many clients to create and register, split between the regions (ledger demo).")] = 24,
    data_dir: Annotated[
        Optional[Path], typer.Option("--data-dir", help="Keep the run's data here (default: a temporary directory, deleted).", show_default=False)
    ] = None,
    members: Annotated[int, typer.Option("--members", min=1, max=1024, help="How many identities to create (--offline).")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of the timeline.")] = False,
) -> None:
    """End-to-end demo across regions: two registries on two ledgers, three relays, sends, refusals, pickups, evidence."""
    from rich.console import Console

    from registry.cli._common import fail, print_json  # here: registry.cli imports this package
    from registry.demo.offline import offline as run_offline
    from registry.demo.report import print_summary
    from registry.demo.scenario import Scenario

    if offline:
        run_offline(members, as_json)
        return
    console = Console(quiet=as_json, highlight=False)
    try:
        if data_dir is not None:
            # The demo's ledgers are new each run: an old index or log would not match them.
            if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
                fail(f"--data-dir {data_dir} must be a new or empty directory")
            data_dir.mkdir(parents=True, exist_ok=True)
            summary = Scenario(data_dir.resolve(), clients, console).run()
        else:
            with tempfile.TemporaryDirectory(prefix="zkid-demo-") as tmp:
                summary = Scenario(Path(tmp), clients, console).run()
            for region in summary.get("regions", {}).values():
                region["data_dir"] = None  # deleted with the temporary directory: no path to give
    except KeyboardInterrupt:
        typer.echo("interrupted: everything started was stopped", err=True)
        raise typer.Exit(130) from None
    except DemoError as exc:
        typer.echo(f"zkid: demo failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        print_json(summary)
    else:
        print_summary(console, summary)
    if not summary["ok"]:
        raise typer.Exit(1)
