"""``zkid demo``: a short walkthrough of the ZK-ID core on the official ceremony keys.

It creates identities, builds a group, proves membership for a relay-epoch scope and
verifies the proof, then runs the registry's own ``Authorizer`` to show that a replayed
proof, a proof moved to another blob, a sender over its per-epoch limit and a non-member
are all refused for the right reason. Nothing leaves the machine.
"""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from registry.cli._common import print_json


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    members: int = typer.Option(16, min=1, max=1024, help="How many identities to create."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of the timeline."),
) -> None:
    """Walk through identities, a group, a proof and its verification (offline)."""
    from zk.identity import Identity
    from zk.proof import generate_proof, verify_proof
    from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at
    from zk.tree import LeanIMT

    from registry.authorization import Authorizer, GroupPolicy, MemoryNullifierStore, StaticRoots

    console = Console(quiet=as_json)
    steps: list[dict[str, Any]] = []

    def step(name: str, started: float, **info: Any) -> None:
        elapsed = time.perf_counter() - started
        steps.append({"step": name, "seconds": round(elapsed, 4), **info})
        details = ", ".join(f"{k}={v}" for k, v in info.items())
        console.print(f"[green]✓[/green] {name} [dim]({elapsed * 1000:.1f} ms)[/dim] {details}")

    t = time.perf_counter()
    identities = [Identity() for _ in range(members)]
    step("create identities", t, count=members)

    t = time.perf_counter()
    group = LeanIMT(leaves=[i.commitment for i in identities])
    step("build LeanIMT group", t, size=group.size, depth=group.depth)

    sender = identities[members // 2]
    blob = b"an end-to-end encrypted blob, opaque to everyone on the way"
    scope = RelayScope(group_id=0, epoch=epoch_at(time.time(), 600), slot=0).encode()
    message = blob_message(digest_blob(blob))

    t = time.perf_counter()
    proof = generate_proof(sender, group, message, scope)
    step("generate proof (witness + Groth16, official key)", t, depth=proof.merkle_tree_depth)

    t = time.perf_counter()
    ok = verify_proof(proof)
    step("verify proof (groth16py)", t, valid=ok)

    # The refusals are real: the same Authorizer the registry and relays run.
    roots = StaticRoots(window=3600)
    roots.set_current(0, group.root, time.time())
    policy = GroupPolicy(group_id=0, epoch_length=600, message_limit=2)
    authorizer = Authorizer({0: policy}, roots, MemoryNullifierStore())
    digest = digest_blob(blob)
    outcomes: dict[str, str] = {}

    t = time.perf_counter()
    outcomes["first_send"] = authorizer.authorize(proof, 0, digest).reason.value
    outcomes["replayed_proof"] = authorizer.authorize(proof, 0, digest).reason.value
    outcomes["proof_moved_to_other_blob"] = authorizer.authorize(proof, 0, digest_blob(b"another blob")).reason.value
    step("authorize, replay, move to another blob", t, **outcomes)

    t = time.perf_counter()
    over = RelayScope(group_id=0, epoch=epoch_at(time.time(), 600), slot=policy.message_limit).encode()
    over_limit = generate_proof(sender, group, message, over)
    outcomes["over_epoch_limit"] = authorizer.authorize(over_limit, 0, digest).reason.value
    outsider = Identity()
    outsiders = LeanIMT(leaves=[outsider.commitment, identities[0].commitment])
    foreign = generate_proof(outsider, outsiders, message, scope)
    outcomes["non_member"] = authorizer.authorize(foreign, 0, digest).reason.value
    step("over the per-epoch limit, non-member", t, over_epoch_limit=outcomes["over_epoch_limit"], non_member=outcomes["non_member"])

    summary = {
        "members": members,
        "root": str(group.root),
        "proof_valid": ok,
        "outcomes": outcomes,
        "steps": steps,
    }
    if as_json:
        print_json(summary)
    else:
        table = Table(title="letro-zkid demo")
        table.add_column("step")
        table.add_column("ms", justify="right")
        for s in steps:
            table.add_row(s["step"], f"{s['seconds'] * 1000:.1f}")
        console.print(table)
    expected = {
        "first_send": "ok",
        "replayed_proof": "nullifier_reused",
        "proof_moved_to_other_blob": "message_mismatch",
        "over_epoch_limit": "slot_out_of_range",
        "non_member": "unknown_root",
    }
    if not ok or outcomes != expected:
        raise typer.Exit(1)
