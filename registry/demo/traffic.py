"""The demo's traffic across regions: sends from clients of each registry to clients of
the other (the sender posts to the relay nearest the recipient, in any region), the
refusals each for its reason on both authorization paths, and the pickups."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from registry.demo.regions import SEND_GROUP, Region, Relay
from registry.demo.scenario import Mailbox, Sent
from registry.demo.servers import DemoError

if TYPE_CHECKING:
    from registry.demo.scenario import Scenario

#: A registry no relay trusts (a proof naming it has no home to check it against).
UNTRUSTED_REGISTRY = (1, "0x000000000000000000000000000000000000dead")


def _plan(sc: Scenario) -> list[tuple[Region, int, Region, int]]:
    """(sender's region, sender, recipient's region, recipient): in each region senders 0-2
    write to clients of the next region, and sender 3 uses its whole per-epoch budget on
    both regions' clients (its first blob stays home: that region's evidence bundle)."""
    plan: list[tuple[Region, int, Region, int]] = []
    for i, home in enumerate(sc.regions):
        other = sc.regions[(i + 1) % len(sc.regions)]
        plan += [(home, s, other, s % len(other.identities)) for s in range(3)]
        for k in range(home.message_limit):
            to = home if k % 2 == 0 else other
            plan.append((home, 3, to, k % len(to.identities)))
    return plan


def post(sc: Scenario, relay: Relay, mailbox: Mailbox, blob: bytes, proof: Any) -> tuple[int, Any]:
    """``(201, the relay's answer)``, or ``(HTTP status, refusal code)`` (the SDK's send)."""
    from registry.client.api import RelaySendError, send_blob

    sc.outcomes.sent += 1
    try:
        return 201, send_blob(relay.http, mailbox.tag, mailbox.pickup_hash, blob, SEND_GROUP, proof)
    except RelaySendError as exc:
        return exc.status, exc.code


def sends(sc: Scenario) -> list[Sent]:
    from registry.client.api import build_send_authorization

    sent: list[Sent] = []
    with sc.phase("sends"):
        for home, sender, to, recipient in _plan(sc):
            mailbox = sc.mailbox_of(to, recipient)
            relay = mailbox.relay
            blob = b"sealed:" + secrets.token_bytes(180)  # stands for an end-to-end encrypted blob
            proof, digest = sc.timed_proof(
                lambda: build_send_authorization(
                    home.identities[sender], home.merkle_proof(sender), SEND_GROUP, blob, time.time(), sc.slots_of(home, sender),
                    registry=home.ref, epoch_length=home.epoch_length, message_limit=home.message_limit,
                )
            )
            status, data = post(sc, relay, mailbox, blob, proof)
            who = f"{home.name} client {sender} → {to.name} client {recipient}"
            sc.outcomes.records[home.name] += 1  # the acceptance or refusal record, in the sender's home log
            if status != 201:
                sc.say(relay.region, f"{who}: refused {data} (expected accepted)", "bold red")
                sc.outcomes.refused[str(data)] += 1
                sc.outcomes.refusals.append({"case": "valid send", "relay": relay.region, "auth": relay.auth[home.name], "expected": "accepted", "got": str(data)})
                continue
            sc.outcomes.accepted += 1
            s = Sent(home, sender, to, recipient, relay, mailbox, blob, proof, digest, data["id"], data.get("evidence_id"))
            sent.append(s)
            sc.say(relay.region, f"{who}: [green]accepted[/green] ({s.auth} path, slot {_slot_of(proof)}, blob {data['id'][:8]}…)")
    crossing = sum(1 for s in sent if s.home is not s.to)
    sc.check("cross_region_sends_accepted", crossing > 0 and {s.relay.region for s in sent} == {r.region for r in sc.relays})
    return sent


def refuse(sc: Scenario, case: str, relay: Relay, expected: str, home: Region | None, blob: bytes, proof: Any) -> str:
    """Post a send that must be refused for ``expected`` (to a scratch mailbox)."""
    scratch = Mailbox(relay, secrets.token_bytes(32), secrets.token_bytes(32))
    status, data = post(sc, relay, scratch, blob, proof)
    got = "accepted" if status == 201 else str(data)
    if got != "accepted":
        sc.outcomes.refused[got] += 1
    else:
        sc.outcomes.accepted += 1
    if home is not None:
        sc.outcomes.records[home.name] += 1
    auth = "none" if home is None else relay.auth[home.name]
    sc.outcomes.refusals.append({"case": case, "relay": relay.region, "auth": auth, "expected": expected, "got": got})
    style = "yellow" if got == expected else "bold red"
    shown = "refused " + got if got != "accepted" else "ACCEPTED"
    sc.say(relay.region, f"{case}: [{style}]{shown}[/{style}] (HTTP {status}; {auth} path; expected {expected})")
    return got


def _relay_of(sc: Scenario, home: Region, auth: str, but: Relay | None = None) -> Relay:
    return next(r for r in sc.relays if r.auth[home.name] == auth and r is not but)


def refusals(sc: Scenario, sent: list[Sent]) -> None:
    if not sent:
        raise DemoError("no send was accepted: nothing to replay")
    first, second = sc.regions[0], sc.regions[-1]
    with sc.phase("refusals"):
        _over_limit(sc, first)
        _replays(sc, sent)
        _foreign(sc, first, second)
        for auth in ("local", "registry"):  # a proof moved to another blob: the relay hashes the blob itself
            s = next((s for s in sent if s.auth == auth), None)
            if s is not None:
                moved = b"sealed:" + secrets.token_bytes(len(s.blob) - 7)
                refuse(sc, f"{s.home.name} proof of blob {s.blob_id[:8]}… on another blob", s.relay, "message_mismatch", s.home, moved, s.proof)


def _over_limit(sc: Scenario, home: Region) -> None:
    """Sender 3 has used its budget: the SDK refuses another slot, and a proof of slot
    ``limit`` made by hand is refused on both paths (before its nullifier is spent)."""
    from zk.proof import generate_proof
    from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at

    from registry.client.api import SlotsExhaustedError

    sender, limit = 3, home.message_limit
    epoch = epoch_at(time.time(), home.epoch_length)
    slots = sc.slots_of(home, sender)
    # Its sends used the budget of their epoch. If a new epoch began since (a run across the
    # turn of an epoch), its slots are used up here through the SDK, without sending, so
    # the check below is always the SDK's own limit.
    for _ in range(max(0, limit - len(slots.used(SEND_GROUP, epoch)))):
        slots.claim(SEND_GROUP, epoch, limit)
    try:
        slots.claim(SEND_GROUP, epoch, limit)
        sdk_refused = False
    except SlotsExhaustedError:
        sdk_refused = True
    sc.check("sdk_refuses_slot_over_limit", sdk_refused)
    sc.say(home.name, f"client {sender}'s SDK: all {limit} slots of epoch {epoch} used, no further authorization")
    blob = b"sealed:" + secrets.token_bytes(64)
    scope = RelayScope.of(home.ref, SEND_GROUP, epoch, limit).encode()
    over = sc.timed_proof(lambda: generate_proof(home.identities[sender], home.merkle_proof(sender), blob_message(digest_blob(blob)), scope))
    for auth in ("local", "registry"):
        refuse(sc, f"{home.name} client {sender} over its limit (slot {limit})", _relay_of(sc, home, auth), "slot_out_of_range", home, blob, over)


def _replays(sc: Scenario, sent: list[Sent]) -> None:
    """One rate limit everywhere: a proof accepted at a relay that checked it locally is
    replayed there and at every other relay, local or registry path: the home registry
    (the nullifier authority of its groups) refuses each."""
    for i, home in enumerate(sc.regions):
        s = next((s for s in sent if s.home is home and s.auth == "local"), None)
        if s is None:
            sc.check(f"{home.name}:a_local_acceptance_to_replay", False)
            continue
        relays = ([s.relay] if i == 0 else []) + [r for r in sc.relays if r is not s.relay]
        got = [
            refuse(sc, f"replay of a {home.name} proof accepted at {s.relay.region}", r, "nullifier_reused", home, s.blob, s.proof)
            for r in relays
        ]
        sc.check(f"{home.name}:one_proof_accepted_once_at_every_relay", all(g == "nullifier_reused" for g in got))


def _foreign(sc: Scenario, first: Region, second: Region) -> None:
    """Proofs no trusted group backs: a non-member's; a member of ``first``'s group 0
    presenting it as ``second``'s group 0 (the scope names the registry); a registry
    outside the trust list."""
    from zk.identity import Identity
    from zk.proof import generate_proof
    from zk.relay_scope import RegistryRef, RelayScope, blob_message, digest_blob, epoch_at
    from zk.tree import LeanIMT

    outsider = Identity()
    fake = LeanIMT(leaves=[outsider.commitment] + [i.commitment for i in second.identities[:3]])
    blob = b"sealed:" + secrets.token_bytes(64)
    message = blob_message(digest_blob(blob))

    def scope(ref: Any, region: Region) -> int:
        return int(RelayScope.of(ref, SEND_GROUP, epoch_at(time.time(), region.epoch_length), 0).encode())

    foreign = sc.timed_proof(lambda: generate_proof(outsider, fake, message, scope(second.ref, second)))
    for auth in ("registry", "local"):
        refuse(sc, f"a non-member's proof for {second.name}", _relay_of(sc, second, auth), "unknown_root", second, blob, foreign)
    # Another blob: a second refusal of one blob at one relay would be the same record.
    other = b"sealed:" + secrets.token_bytes(64)
    member = first.identities[0]
    moved = sc.timed_proof(lambda: generate_proof(member, first.merkle_proof(0), blob_message(digest_blob(other)), scope(second.ref, second)))
    refuse(sc, f"a {first.name} member's proof as {second.name}'s group {SEND_GROUP}", _relay_of(sc, second, "local"), "unknown_root", second, other, moved)
    untrusted = RegistryRef(*UNTRUSTED_REGISTRY)
    stranger = sc.timed_proof(lambda: generate_proof(outsider, fake, message, scope(untrusted, second)))
    refuse(sc, "a proof for a registry outside the trust list", sc.relays[-1], "unknown_registry", None, blob, stranger)


def pickups(sc: Scenario, sent: list[Sent]) -> tuple[int, bool]:
    """Each recipient picks its blobs up at its relay with its capability and acknowledges
    them (deleted); a second pickup finds nothing. Returns (delivered, exactly once)."""
    from registry.client.messaging import RelayError, pickup

    expected: dict[str, Sent] = {s.blob_id: s for s in sent}
    seen: Counter[str] = Counter()
    content_ok = True
    with sc.phase("pickups"):
        wrong = next(iter(sc.mailboxes.values()))
        try:
            pickup(wrong.relay.http, wrong.tag, secrets.token_bytes(32))
            refused: RelayError | None = None
        except RelayError as exc:
            refused = exc
        sc.check("wrong_capability_forbidden", refused is not None and refused.status == 403)
        sc.say(wrong.relay.region, f"pickup with a wrong capability: refused {None if refused is None else refused.code}")
        for (region, recipient), mb in sorted(sc.mailboxes.items()):
            picked = _pickup_and_ack(mb, seen)
            content_ok = content_ok and all((s := expected.get(b.id)) is not None and b.blob == s.blob and b.digest == s.digest for b in picked)
            if picked:
                sc.say(mb.relay.region, f"{region} client {recipient} picked up {len(picked)} blob(s) with its capability; acknowledged, deleted")
        again = 0
        for mb in sc.mailboxes.values():
            try:
                again += len(pickup(mb.relay.http, mb.tag, mb.secret))
            except RelayError:
                again += 1
        sc.say("clients", f"second pickup of every mailbox: {again} blob(s) left")
    for blob_id in seen:  # a consignment and an access record each, in the sender's home log
        if blob_id in expected:
            sc.outcomes.records[expected[blob_id].home.name] += 2
    exactly_once = content_ok and again == 0 and set(seen) == set(expected) and all(v == 1 for v in seen.values())
    sc.check("delivered_exactly_once", exactly_once)
    sc.check("picked_up_content_matches", content_ok)
    return sum(seen.values()), exactly_once


def _pickup_and_ack(mb: Mailbox, seen: Counter[str]) -> list[Any]:
    """One mailbox's blobs (digests checked by the SDK), each acknowledged; ``seen``
    counts the acknowledged (deleted) ones."""
    from registry.client.messaging import RelayError, acknowledge_blob, pickup

    try:
        picked = pickup(mb.relay.http, mb.tag, mb.secret)
    except RelayError as exc:
        raise DemoError(f"pickup failed at {mb.relay.region}: HTTP {exc.status} {exc.code}") from None
    for b in picked:
        try:
            acknowledge_blob(mb.relay.http, b.id, mb.secret)
        except RelayError:
            continue
        seen[b.id] += 1
    return picked


def _slot_of(proof: Any) -> int:
    from zk.relay_scope import decode_scope

    try:
        return decode_scope(int(proof.scope)).slot
    except (AttributeError, ValueError):
        return -1
