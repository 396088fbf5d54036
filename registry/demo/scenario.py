"""The demo's scenario across regions: the topology is started (registry/demo/regions.py),
clients are admitted and registered in each region, then the traffic
(registry/demo/traffic.py) and the evidence (registry/demo/evidence.py) are played with
the real components; every outcome comes from them."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.demo.regions import MESSAGE_LIMIT, REGISTRIES, RELAYS, SEND_GROUP, Region, Relay, relay_addresses, start_region, start_relay

if TYPE_CHECKING:
    from rich.console import Console

REFUSAL_REASONS = ("slot_out_of_range", "nullifier_reused", "unknown_root", "message_mismatch", "unknown_registry")


@dataclass
class Mailbox:
    relay: Relay
    tag: bytes
    secret: bytes

    @property
    def pickup_hash(self) -> bytes:
        from registry.client.messaging import pickup_hash

        return pickup_hash(self.secret)


@dataclass
class Sent:
    home: Region  # the sender's registry: the blob's evidence goes to its log
    sender: int
    to: Region  # the recipient's registry
    recipient: int
    relay: Relay  # the relay nearest the recipient: it holds the blob
    mailbox: Mailbox
    blob: bytes
    proof: Any
    digest: bytes
    blob_id: str
    evidence_id: str | None

    @property
    def auth(self) -> str:
        return self.relay.auth[self.home.name]


@dataclass
class Outcomes:
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    refusals: list[dict[str, str]] = field(default_factory=list)
    records: Counter[str] = field(default_factory=Counter)  # evidence records expected per home region


class Scenario:
    def __init__(self, root: Path, clients: int, console: Console) -> None:
        self.root = root
        self.n_clients = clients
        self.console = console
        self.t0 = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.proofs = 0
        self.proof_seconds = 0.0
        self.outcomes = Outcomes()
        self.expect: dict[str, bool] = {}
        self.regions: list[Region] = []
        self.relays: list[Relay] = []
        self.mailboxes: dict[tuple[str, int], Mailbox] = {}
        self.slot_books: dict[tuple[str, int], Any] = {}

    # -- output ------------------------------------------------------------------------

    def say(self, who: str, text: str, style: str = "") -> None:
        stamp = f"[dim]{time.perf_counter() - self.t0:6.2f}s[/dim]"
        body = f"[{style}]{text}[/{style}]" if style else text
        self.console.print(f"{stamp} [bold cyan]{who:<12}[/bold cyan] {body}")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - started, 3)

    def check(self, name: str, ok: bool) -> bool:
        self.expect[name] = bool(ok)
        if not ok:
            self.say("demo", f"expectation failed: {name}", "bold red")
        return bool(ok)

    def timed_proof(self, make: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return make()
        finally:
            self.proofs += 1
            self.proof_seconds += time.perf_counter() - started

    # -- clients' state ----------------------------------------------------------------

    def slots_of(self, region: Region, client: int) -> Any:
        """The client's own slot book (registry/client/api.py SendSlots)."""
        from registry.client import SendSlots

        key = (region.name, client)
        if key not in self.slot_books:
            (self.root / "clients").mkdir(exist_ok=True)
            self.slot_books[key] = SendSlots(self.root / "clients" / f"slots-{region.name}-{client}.sqlite")
        return self.slot_books[key]

    def mailbox_of(self, region: Region, client: int) -> Mailbox:
        """The client's mailbox, at the relay nearest it (the relays take turns)."""
        key = (region.name, client)
        if key not in self.mailboxes:
            relay = self.relays[(client + self.regions.index(region)) % len(self.relays)]
            self.mailboxes[key] = Mailbox(relay, secrets.token_bytes(32), secrets.token_bytes(32))
        return self.mailboxes[key]

    # -- the run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        names = ", ".join(name for name, _ in REGISTRIES)
        self.console.rule(f"letro-zkid demo: regional registries ({names}) and relays across borders")
        self.say("demo", f"data directory {self.root}")
        with contextlib.ExitStack() as stack:
            with self.phase("start"):
                relay_keys = relay_addresses(self.root)
                self.regions = [
                    start_region(stack, self.root, name, chain_id, relay_keys, self.say) for name, chain_id in REGISTRIES
                ]
                self.relays = [start_relay(stack, self.root, region, auth, self.regions, self.say) for region, auth in RELAYS]
            trusted = [(r.name, r.chain_id, r.manifest.address("ZkIdRegistry").lower()) for r in self.regions]
            self.check("relays_list_every_registry", all(
                [(e.get("region"), e.get("chain_id"), str(e.get("contract")).lower()) for e in relay.listed] == trusted for relay in self.relays
            ))
            try:
                return self._play()
            finally:
                for book in self.slot_books.values():
                    book.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def _play(self) -> dict[str, Any]:
        from registry.demo import evidence, traffic
        from registry.demo.clients import admit_and_register
        from registry.demo.report import summary

        sizes = _split(self.n_clients, len(self.regions))
        admissions = [admit_and_register(self, region, n) for region, n in zip(self.regions, sizes)]
        sent = traffic.sends(self)
        traffic.refusals(self, sent)
        delivered, exactly_once = traffic.pickups(self, sent)
        logs = evidence.wait_for_logs(self)
        bundles = {region.name: evidence.bundle(self, region, sent) for region in self.regions}
        return summary(self, admissions, sent, delivered, exactly_once, logs, bundles)


def _split(total: int, parts: int) -> list[int]:
    """``total`` clients over ``parts`` regions, the first ones taking the remainder."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


__all__ = ["MESSAGE_LIMIT", "REFUSAL_REASONS", "SEND_GROUP", "Mailbox", "Outcomes", "Scenario", "Sent"]
