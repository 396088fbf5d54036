"""``zkid demo --offline``: the walkthrough of the cryptography alone (no ledger, no
network): identities, a group, a proof, and the refusals from the registry's Authorizer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer


def offline(members: int, as_json: bool) -> None:
    """The offline walkthrough: identities, a group, a proof on the official key, and the
    refusals from the registry's own ``Authorizer``. Nothing leaves the machine."""
    from zk.identity import Identity
    from zk.proof import generate_proof, verify_proof
    from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at
    from zk.tree import LeanIMT

    from rich.console import Console
    from rich.table import Table

    from registry.cli._common import print_json

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
    scope = RelayScope.of(_offline_registry(), 0, epoch_at(time.time(), 600), 0).encode()
    message = blob_message(digest_blob(blob))

    t = time.perf_counter()
    proof = generate_proof(sender, group, message, scope)
    step("generate proof (witness + Groth16, official key)", t, depth=proof.merkle_tree_depth)

    t = time.perf_counter()
    ok = verify_proof(proof)
    step("verify proof (groth16py)", t, valid=ok)

    outcomes = _offline_refusals(step, identities, group, sender, proof, blob, message, scope)

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
        table = Table(title="letro-zkid demo (offline)")
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


def _offline_registry() -> Any:
    """The stand-in deployment of the offline walkthrough (no ledger): Anvil's chain id and
    the address of the first contract its first dev account deploys."""
    from zk.relay_scope import RegistryRef

    return RegistryRef(31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")


def _offline_refusals(
    step: Callable[..., None], identities: list[Any], group: Any, sender: Any, proof: Any, blob: bytes, message: int, scope: int
) -> dict[str, str]:
    """The refusals of the offline walkthrough, from the same Authorizer the registry and
    relays run: a replay, a proof moved to another blob, a slot over the limit, a non-member."""
    from zk.identity import Identity
    from zk.proof import generate_proof
    from zk.relay_scope import RelayScope, digest_blob, epoch_at
    from zk.tree import LeanIMT

    from registry.service.authorization import Authorizer, GroupPolicy, MemoryNullifierStore, StaticRoots

    roots = StaticRoots(window=3600)
    roots.set_current(0, group.root, time.time())
    policy = GroupPolicy(group_id=0, epoch_length=600, message_limit=2)
    authorizer = Authorizer({0: policy}, roots, MemoryNullifierStore(), registry=_offline_registry())
    digest = digest_blob(blob)
    outcomes: dict[str, str] = {}

    t = time.perf_counter()
    outcomes["first_send"] = authorizer.authorize(proof, 0, digest).reason.value
    outcomes["replayed_proof"] = authorizer.authorize(proof, 0, digest).reason.value
    outcomes["proof_moved_to_other_blob"] = authorizer.authorize(proof, 0, digest_blob(b"another blob")).reason.value
    step("authorize, replay, move to another blob", t, **outcomes)

    t = time.perf_counter()
    over = RelayScope.of(_offline_registry(), 0, epoch_at(time.time(), 600), policy.message_limit).encode()
    over_limit = generate_proof(sender, group, message, over)
    outcomes["over_epoch_limit"] = authorizer.authorize(over_limit, 0, digest).reason.value
    outsider = Identity()
    outsiders = LeanIMT(leaves=[outsider.commitment, identities[0].commitment])
    foreign = generate_proof(outsider, outsiders, message, scope)
    outcomes["non_member"] = authorizer.authorize(foreign, 0, digest).reason.value
    step("over the per-epoch limit, non-member", t, over_epoch_limit=outcomes["over_epoch_limit"], non_member=outcomes["non_member"])
    return outcomes
