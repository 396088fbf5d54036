"""``zkid demo``: the whole ZK-ID path end to end, on an embedded local ledger.

One command, nothing to configure. In a temporary data directory (or ``--data-dir``) and
on free loopback ports it starts a throw-away Anvil, deploys the contracts, opens the
registry service (index, batcher, evidence log and anchorer) and serves its HTTP API,
then three reference relays (``us-east`` and ``ap-southeast`` ask the registry to
authorize a send, ``eu-west`` checks locally against the ledger), all posting evidence
records to the registry's log. Then it plays the scenario with the real components:

1. ``--clients`` identities are created and registered in one batch; the demo waits until
   they are anchored on chain and rebuilds the group from the ledger's events alone;
2. senders send blobs through different relays, each with a send authorization built by
   :func:`registry.client.api.build_send_authorization` (docs/authorization.md);
3. refusals, each for its reason: a sender over its per-epoch limit
   (``slot_out_of_range``), a replayed proof (``nullifier_reused``), a non-member
   (``unknown_root``), a proof moved to another blob (``message_mismatch``), on both
   authorization paths;
4. recipients pick their blobs up with their capability and acknowledge them (deleted: a
   second pickup finds nothing);
5. the evidence records reach the log and its checkpoint is anchored on the ledger; one
   record's bundle is fetched, the recipient's acknowledgement attached, and the bundle
   verified with the checks of ``zkid evidence verify --rpc-url`` (anchor read from the
   EvidenceAnchor contract).

Every outcome comes from the running components. ``--json`` prints a summary with the
count of each outcome; the exit code is 0 only if every expectation holds. Everything
started is stopped at the end, also on error or Ctrl-C (exit 130).

``--offline`` runs the earlier walkthrough of the cryptography alone (no ledger, no
network): identities, a group, a proof, and the refusals from the registry's Authorizer.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from registry.cli._common import fail, print_json

if TYPE_CHECKING:
    from rich.console import Console

RELAYS: tuple[tuple[str, str], ...] = (("us-east", "registry"), ("eu-west", "local"), ("ap-southeast", "registry"))
MESSAGE_LIMIT = 3  # send slots per identity per epoch in the demo group: small, to show the limit
REFUSAL_REASONS = ("slot_out_of_range", "nullifier_reused", "unknown_root", "message_mismatch")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    offline: Annotated[bool, typer.Option("--offline", help="Only the offline walkthrough of the cryptography (no ledger, no network).")] = False,
    clients: Annotated[int, typer.Option("--clients", min=8, max=1000, help="How many clients to create and register (ledger demo).")] = 24,
    data_dir: Annotated[
        Optional[Path], typer.Option("--data-dir", help="Keep the run's data here (default: a temporary directory, deleted).", show_default=False)
    ] = None,
    members: Annotated[int, typer.Option("--members", min=1, max=1024, help="How many identities to create (--offline).")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of the timeline.")] = False,
) -> None:
    """End-to-end demo on a local ledger: registry, three relays, sends, refusals, pickups, evidence."""
    from rich.console import Console

    if offline:
        _offline(members, as_json)
        return
    console = Console(quiet=as_json, highlight=False)
    try:
        if data_dir is not None:
            # The demo's ledger is new each run: an old index or log would not match it.
            if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
                fail(f"--data-dir {data_dir} must be a new or empty directory")
            data_dir.mkdir(parents=True, exist_ok=True)
            summary = _Scenario(data_dir.resolve(), clients, console).run()
        else:
            with tempfile.TemporaryDirectory(prefix="zkid-demo-") as tmp:
                summary = _Scenario(Path(tmp), clients, console).run()
    except KeyboardInterrupt:
        typer.echo("interrupted: everything started was stopped", err=True)
        raise typer.Exit(130) from None
    except _DemoError as exc:
        typer.echo(f"zkid: demo failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        print_json(summary)
    else:
        _print_summary(console, summary)
    if not summary["ok"]:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- servers


class _DemoError(RuntimeError):
    """A component did not answer as the scenario needs (the run stops, exit 1)."""


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yield its URL."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # signals stay with the main thread
            yield

    sock = socket.socket()
    # Without it each response waits for the client's delayed ACK (Nagle): ~40 ms a request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, server_header=False, lifespan="on", timeout_graceful_shutdown=2,
        proxy_headers=False,  # no proxy in front: the peer address is the client's
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"demo-http-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise _DemoError("an HTTP server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        sock.close()


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Hold SIGINT back for a block that starts a child process and hands it to the
    ExitStack, then raise the interrupt once the child can be stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _registry_service(settings: Any) -> Iterator[Any]:
    from registry.service.facade import RegistryService

    with RegistryService.open(settings) as service:  # closing stops the threads first
        service.start()
        yield service


# ---------------------------------------------------------------------------- scenario


@dataclass
class _Relay:
    region: str
    auth: str
    url: str
    http: Any  # httpx.Client, used through the client SDK (registry/client/messaging.py)


@dataclass
class _Mailbox:
    relay: _Relay
    tag: bytes
    secret: bytes

    @property
    def pickup_hash(self) -> bytes:
        from registry.client.messaging import pickup_hash

        return pickup_hash(self.secret)


@dataclass
class _Sent:
    sender: int
    recipient: int
    relay: _Relay
    mailbox: _Mailbox
    blob: bytes
    proof: Any
    digest: bytes
    blob_id: str
    evidence_id: str | None


@dataclass
class _Outcomes:
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    refusals: list[dict[str, str]] = field(default_factory=list)


class _Scenario:
    def __init__(self, root: Path, clients: int, console: Console) -> None:
        self.root = root
        self.n_clients = clients
        self.console = console
        self.t0 = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.proofs = 0
        self.proof_seconds = 0.0
        self.outcomes = _Outcomes()
        self.expect: dict[str, bool] = {}

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
            self.phases[name] = round(time.perf_counter() - started, 3)

    def check(self, name: str, ok: bool) -> bool:
        self.expect[name] = bool(ok)
        if not ok:
            self.say("demo", f"expectation failed: {name}", "bold red")
        return bool(ok)

    # -- the run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from registry.client import RegistryClient
        from registry.ledger.accounts import anvil_dev_account
        from registry.ledger.anvil import AnvilProcess
        from registry.ledger.deploy import deploy_contracts, save_manifest
        from registry.ledger.tx import Transactor
        from registry.service.settings import load_settings

        self.console.rule("letro-zkid demo: ZK-IDs, relays and delivery evidence on a local ledger")
        self.say("demo", f"data directory {self.root}")
        with contextlib.ExitStack() as stack:
            with self.phase("start"):
                reg_dir = self.root / "registry"
                reg_dir.mkdir(parents=True, exist_ok=True)
                with _interrupt_deferred():  # a Ctrl-C while Anvil starts must not orphan it
                    anvil = stack.enter_context(AnvilProcess(["--gas-limit", "300000000"], log_file=self.root / "anvil.log"))
                self.say("ledger", f"Anvil on {anvil.rpc_url} (pid {anvil.pid})")
                manifest = deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0), poll_interval=0.02), region="demo")
                save_manifest(reg_dir, manifest)
                self.say("ledger", f"deployed ZkIdRegistry {manifest.address('ZkIdRegistry')}, EvidenceAnchor {manifest.address('EvidenceAnchor')}")
                # The log takes records only from registered relay keys: create the relays'
                # keys first (each relay loads its own from its data directory) and register them.
                from eth_account import Account

                from registry.relay.evidence import load_relay_key

                relay_keys = [
                    Account.from_key(load_relay_key(self.root / f"relay-{region}")).address for region, _ in RELAYS
                ]
                settings = load_settings(
                    None,
                    data_dir=reg_dir,
                    relay_keys=relay_keys,
                    rpc_url=anvil.rpc_url,
                    region="demo",
                    confirmations=1,
                    poll_interval=0.1,
                    batch_interval=0.3,
                    batch_min_size=1,  # the demo registers its few clients at once: no floor to wait for
                    message_limit=MESSAGE_LIMIT,
                    # Anchor once records waited a moment, with no rate limit: the demo is short.
                    anchor_interval=0.0,
                    anchor_min_growth=1000,
                    anchor_max_delay=0.5,
                )
                service = stack.enter_context(_registry_service(settings))
                from registry.web.app import create_app

                registry_url = stack.enter_context(_serve(create_app(service, settings)))
                self.say("registry", f"serving {registry_url} (authorization, membership, evidence log)")
                http = stack.enter_context(RegistryClient(registry_url, timeout=60.0))
                relays = [self._start_relay(stack, region, auth, anvil.rpc_url, registry_url, manifest) for region, auth in RELAYS]
            self.manifest = manifest
            self.service = service
            self.registry_url = registry_url
            self.rpc_url = anvil.rpc_url
            self.w3 = anvil.w3
            return self._play(http, registry_url, relays)
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_relay(self, stack: contextlib.ExitStack, region: str, auth: str, rpc_url: str, registry_url: str, manifest: Any) -> _Relay:
        import httpx

        from registry.ledger.deploy import save_manifest
        from registry.relay.app import RelaySettings, create_relay_app

        data = self.root / f"relay-{region}"
        data.mkdir(parents=True, exist_ok=True)
        save_manifest(data, manifest)
        settings = RelaySettings(
            data_dir=data,
            region=region,
            auth_mode=auth,  # type: ignore[arg-type]
            rpc_url=rpc_url if auth == "local" else None,
            registry_url=registry_url if auth == "registry" else None,
            evidence_url=registry_url,
            chain_id=manifest.chain_id,
            message_limit=MESSAGE_LIMIT,
            rate_limit=10_000,
            evidence_interval=0.2,
            send_groups=(0,),  # the demo's send group (its admission group is not one)
        )
        url = stack.enter_context(_serve(create_relay_app(settings)))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=60.0))
        how = "asks the registry" if auth == "registry" else "checks locally against the ledger"
        self.say(region, f"relay on {url}: {how}; evidence to the registry's log")
        return _Relay(region, auth, url, client)

    # -- scenario ----------------------------------------------------------------------

    def _play(self, http: Any, registry_url: str, relays: list[_Relay]) -> dict[str, Any]:
        from registry.client import RegistryClient, SendSlots

        group_id = 0
        with self.phase("admission"):
            admission = self._admission(group_id)
        with self.phase("register"):
            identities, admitted, reused, info = self._register_clients(http, registry_url, group_id, admission)
        epoch_length = int(info["epoch_length"])
        limit = int(info["message_limit"])

        # Every client keeps its own slot book and fetches its own Merkle proof.
        slot_books: dict[int, SendSlots] = {}
        merkle: dict[int, Any] = {}
        api = RegistryClient(registry_url)

        def slots_of(i: int) -> SendSlots:
            if i not in slot_books:
                (self.root / "clients").mkdir(exist_ok=True)
                slot_books[i] = SendSlots(self.root / "clients" / f"slots-{i}.sqlite")
            return slot_books[i]

        def proof_of(i: int) -> Any:
            if i not in merkle:
                merkle[i] = api.merkle_proof(group_id, identities[i].commitment)
            return merkle[i]

        mailboxes: dict[tuple[int, str], _Mailbox] = {}

        def mailbox_of(recipient: int, relay: _Relay) -> _Mailbox:
            key = (recipient, relay.region)
            if key not in mailboxes:
                mailboxes[key] = _Mailbox(relay, secrets.token_bytes(32), secrets.token_bytes(32))
            return mailboxes[key]

        try:
            sent = self._sends(http, relays, identities, group_id, epoch_length, limit, slots_of, proof_of, mailbox_of)
            self._refusals(relays, identities, group_id, epoch_length, limit, sent, slots_of, proof_of)
            delivered, exactly_once = self._pickups(sent, mailboxes)
        finally:
            api.close()
            for book in slot_books.values():
                book.close()
        anchored = self._evidence(http, relays, sent)
        bundle = self._bundle(http, relays, sent, identities)
        admission_summary = {
            "policy": "zk",
            "admission_group": admission["group"],
            "checked_persons": len(admission["persons"]),
            "admitted": admitted,
            "second_registration": reused,
        }
        return self._summary(group_id, limit, relays, admission_summary, delivered, exactly_once, {**anchored, **bundle})

    def _summary(
        self, group_id: int, limit: int, relays: list[_Relay], admission: dict[str, Any], delivered: int,
        exactly_once: bool, evidence: dict[str, Any],
    ) -> dict[str, Any]:
        """The last expectations, and the run's summary (``--json``)."""
        o = self.outcomes
        refused = {reason: o.refused.get(reason, 0) for reason in REFUSAL_REASONS}
        other = {k: v for k, v in o.refused.items() if k not in REFUSAL_REASONS}
        self.check("every_send_accepted_or_refused_as_expected", all(x["expected"] == x["got"] for x in o.refusals))
        self.check("each_refusal_reason_seen", all(refused[r] > 0 for r in REFUSAL_REASONS) and not other)
        self.check("every_accepted_blob_delivered", delivered == o.accepted and o.accepted > 0)
        summary: dict[str, Any] = {
            "mode": "local-ledger",
            "clients": self.n_clients,
            "group_id": group_id,
            "admission": admission,
            "message_limit": limit,
            "relays": [{"region": r.region, "auth": r.auth} for r in relays],
            "sent": o.sent,
            "accepted": o.accepted,
            "refused": refused,
            "refused_other": other,
            "refusals": o.refusals,
            "delivered": delivered,
            "delivered_exactly_once": exactly_once,
            **evidence,
            "proofs_generated": self.proofs,
            "proof_seconds": round(self.proof_seconds, 3),
            "phases": self.phases,
            "seconds": round(time.perf_counter() - self.t0, 3),
            "expectations": self.expect,
        }
        summary["ok"] = all(self.expect.values())
        return summary

    def _register_clients(
        self, http: Any, registry_url: str, group_id: int, admission: dict[str, Any]
    ) -> tuple[list[Any], int, str, dict[str, Any]]:
        """Each client registers a fresh ZK-ID, admitted by an anonymous proof; then the
        group is rebuilt from the ledger. Returns the identities, the admission nullifiers,
        the code of a second registration of one person, and the group's parameters."""
        from zk.identity import Identity

        from registry.client import RegistryClient, RegistryClientError, group_from_ledger
        from registry.ledger.registry_contract import RegistryContract

        identities = [Identity() for _ in range(self.n_clients)]
        api = RegistryClient(registry_url)
        try:
            # Each client registers a fresh ZK-ID with an anonymous admission proof: "I
            # am one of the checked persons" (docs/admission.md), nothing more.
            for person, who in zip(admission["persons"], identities):
                started = time.perf_counter()
                api.register_admitted(group_id, who.commitment, person, admission_group=admission["group"])
                self.proofs += 1
                self.proof_seconds += time.perf_counter() - started
            self.say("clients", f"{self.n_clients} fresh identities registered, each admitted by an anonymous proof (202, durable outbox)")
            try:
                api.register_admitted(group_id, Identity().commitment, admission["persons"][0])
                reused = "accepted"
            except RegistryClientError as exc:
                reused = exc.code
            self.say("clients", f"the same person again, for a second ZK-ID in this round: refused ({reused})", "red")
            self.check("admission_credential_used_once", reused == "admission_used")
            admission_nullifiers = self.service.admission.nullifier_count()
            self.check("one_admission_nullifier_per_registration", admission_nullifiers == self.n_clients)
            first = api.wait_until_anchored(group_id, identities[0].commitment, timeout=120, interval=0.2)
            statuses = [api.wait_until_anchored(group_id, i.commitment, timeout=60, interval=0.2) for i in identities]
            info = api.group(group_id)
        finally:
            api.close()
        blocks = {s["block_number"] for s in statuses}
        self.say("ledger", f"anchored: {len(statuses)} members in block(s) {sorted(blocks)} (tx {str(first.get('tx_hash'))[:14]}…)")
        tree = group_from_ledger(RegistryContract(self.w3, self.manifest.address("ZkIdRegistry")), group_id)
        self.check("group_rebuilt_from_ledger", str(tree.root) == info["root"] and tree.size == self.n_clients)
        self.say("clients", f"group rebuilt from ledger events alone: size {tree.size}, root matches the registry: {str(tree.root) == info['root']}")
        self.check("message_limit_applied", int(info["message_limit"]) == MESSAGE_LIMIT)
        return identities, admission_nullifiers, reused, info

    def _admission(self, group_id: int) -> dict[str, Any]:
        """The operator makes an admission group and gives ``group_id`` the ``zk`` policy;
        an account service (here: the demo) checks one person per client and adds one
        admission commitment each, through the operator's path."""
        from zk.identity import Identity

        from registry.service.admission import GroupAdmission
        from registry.client.api import RegistryClient

        service = self.service
        group_a = service.create_group(admission={"policy": "closed"})
        service.set_admission(GroupAdmission(group_id, "zk", admission_group=group_a))
        self.say("operator", f"admission group {group_a} (closed: written by the account service only); group {group_id}: policy zk")
        persons = [Identity() for _ in range(self.n_clients)]
        service.register(group_a, [p.commitment for p in persons])
        with RegistryClient(self.registry_url) as api:
            for p in persons:
                api.wait_until_anchored(group_a, p.commitment, timeout=120, interval=0.2)
        self.say("accounts", f"{len(persons)} persons checked; one admission commitment each anchored in group {group_a}")
        return {"group": group_a, "persons": persons}

    def _home(self) -> Any:
        """The demo registry's deployment, which every scope names (docs/authorization.md: LZE2)."""
        from zk.relay_scope import RegistryRef

        return RegistryRef(self.manifest.chain_id, self.manifest.address("ZkIdRegistry"))

    def _post(self, relay: _Relay, mailbox: _Mailbox, blob: bytes, group_id: int, proof: Any) -> tuple[int, Any]:
        """``(201, the relay's answer)``, or ``(HTTP status, refusal code)`` (the SDK's send)."""
        from registry.client.api import RelaySendError, send_blob

        self.outcomes.sent += 1
        try:
            return 201, send_blob(relay.http, mailbox.tag, mailbox.pickup_hash, blob, group_id, proof)
        except RelaySendError as exc:
            return exc.status, exc.code

    def _timed_proof(self, make: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return make()
        finally:
            self.proofs += 1
            self.proof_seconds += time.perf_counter() - started

    def _sends(
        self, http: Any, relays: list[_Relay], identities: list[Any], group_id: int, epoch_length: int, limit: int,
        slots_of: Callable[[int], Any], proof_of: Callable[[int], Any], mailbox_of: Callable[[int, _Relay], _Mailbox],
    ) -> list[_Sent]:
        from registry.client.api import build_send_authorization

        n = len(identities)
        # Senders 0..4 send one blob each; sender 5 uses its whole per-epoch budget.
        plan = [(s, s % len(relays)) for s in range(5)] + [(5, k % len(relays)) for k in range(limit)]
        sent: list[_Sent] = []
        with self.phase("sends"):
            for k, (sender, relay_index) in enumerate(plan):
                relay = relays[relay_index]
                recipient = n - 1 - (k % (n - 6))  # recipients are other clients
                mailbox = mailbox_of(recipient, relay)
                blob = b"sealed:" + secrets.token_bytes(180)  # stands for an end-to-end encrypted blob
                proof, digest = self._timed_proof(
                    lambda: build_send_authorization(
                        identities[sender], proof_of(sender), group_id, blob, time.time(), slots_of(sender),
                        registry=self._home(), epoch_length=epoch_length, message_limit=limit,
                    )
                )
                status, data = self._post(relay, mailbox, blob, group_id, proof)
                if status != 201:
                    code = data
                    self.say(relay.region, f"client {sender} → client {recipient}: refused {code} (expected accepted)", "bold red")
                    self.outcomes.refused[str(code)] += 1
                    self.outcomes.refusals.append({"case": "valid send", "relay": relay.region, "expected": "accepted", "got": str(code)})
                    continue
                self.outcomes.accepted += 1
                sent.append(_Sent(sender, recipient, relay, mailbox, blob, proof, digest, data["id"], data.get("evidence_id")))
                slot = _slot_of(proof)
                self.say(relay.region, f"client {sender} → mailbox of client {recipient}: [green]accepted[/green] (slot {slot}, {len(blob)} B, blob {data['id'][:8]}…)")
        return sent

    def _refuse(self, case: str, relay: _Relay, expected: str, mailbox: _Mailbox, blob: bytes, group_id: int, proof: Any) -> None:
        status, data = self._post(relay, mailbox, blob, group_id, proof)
        got = "accepted" if status == 201 else str(data)
        if got != "accepted":
            self.outcomes.refused[got] += 1
        else:
            self.outcomes.accepted += 1
        self.outcomes.refusals.append({"case": case, "relay": relay.region, "auth": relay.auth, "expected": expected, "got": got})
        style = "yellow" if got == expected else "bold red"
        self.say(relay.region, f"{case}: [{style}]{'refused ' + got if got != 'accepted' else 'ACCEPTED'}[/{style}] (HTTP {status}; expected {expected})")

    def _refusals(
        self, relays: list[_Relay], identities: list[Any], group_id: int, epoch_length: int, limit: int,
        sent: list[_Sent], slots_of: Callable[[int], Any], proof_of: Callable[[int], Any],
    ) -> None:
        from zk.identity import Identity
        from zk.proof import generate_proof
        from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at
        from zk.tree import LeanIMT

        from registry.client.api import SlotsExhaustedError

        if not sent:
            raise _DemoError("no send was accepted: nothing to replay")
        local = next(r for r in relays if r.auth == "local")
        remote = [r for r in relays if r.auth == "registry"]
        scratch = _Mailbox(local, secrets.token_bytes(32), secrets.token_bytes(32))
        with self.phase("refusals"):
            # 1. Over the per-epoch limit: the SDK refuses a fourth slot itself...
            sender = 5
            epoch = epoch_at(time.time(), epoch_length)
            try:
                slots_of(sender).claim(group_id, epoch, limit)
                sdk_refused = False
            except SlotsExhaustedError:
                sdk_refused = True
            self.check("sdk_refuses_slot_over_limit", sdk_refused)
            self.say("client 5", f"SDK: all {limit} slots of epoch {epoch} used, no fourth authorization")
            # ...so a client that ignores its budget proves slot `limit` by hand.
            blob = b"sealed:" + secrets.token_bytes(64)
            digest = digest_blob(blob)
            over = self._timed_proof(
                lambda: generate_proof(identities[sender], proof_of(sender), blob_message(digest), RelayScope.of(self._home(), group_id, epoch, limit).encode())
            )
            for relay in (local, remote[0]):  # refused before its nullifier is spent: both paths see it
                self._refuse(f"client {sender} over its limit (slot {limit})", relay, "slot_out_of_range", scratch, blob, group_id, over)

            # 2. A replayed proof: again at the same local relay, and across the two relays
            # that share the registry's nullifier store.
            at_local = next((s for s in sent if s.relay is local), None)
            at_remote = next((s for s in sent if s.relay.auth == "registry"), None)
            if at_local is not None:
                self._refuse("replay of an accepted proof", local, "nullifier_reused", scratch, at_local.blob, group_id, at_local.proof)
            if at_remote is not None:
                other = next(r for r in remote if r is not at_remote.relay)
                self._refuse(f"replay of a proof accepted at {at_remote.relay.region}", other, "nullifier_reused", scratch, at_remote.blob, group_id, at_remote.proof)

            # 3. A non-member: a proof over a group the ledger never had.
            outsider = Identity()
            fake = LeanIMT(leaves=[outsider.commitment] + [i.commitment for i in identities[:3]])
            blob = b"sealed:" + secrets.token_bytes(64)
            digest = digest_blob(blob)
            foreign = self._timed_proof(
                lambda: generate_proof(outsider, fake, blob_message(digest), RelayScope.of(self._home(), group_id, epoch_at(time.time(), epoch_length), 0).encode())
            )
            for relay in (remote[-1], local):
                self._refuse("a non-member's proof", relay, "unknown_root", scratch, blob, group_id, foreign)

            # 4. A proof moved to another blob: the relay hashes the blob itself.
            for s in sent[:2]:
                moved = b"sealed:" + secrets.token_bytes(len(s.blob) - 7)
                self._refuse(f"proof of blob {s.blob_id[:8]}… on another blob", s.relay, "message_mismatch", scratch, moved, group_id, s.proof)

    def _pickups(self, sent: list[_Sent], mailboxes: dict[tuple[int, str], _Mailbox]) -> tuple[int, bool]:
        from registry.client.messaging import RelayError, pickup

        expected: dict[str, _Sent] = {s.blob_id: s for s in sent}
        seen: Counter[str] = Counter()
        content_ok = True
        with self.phase("pickups"):
            wrong = next(iter(mailboxes.values()))
            try:
                pickup(wrong.relay.http, wrong.tag, secrets.token_bytes(32))
                refused: RelayError | None = None
            except RelayError as exc:
                refused = exc
            self.check("wrong_capability_forbidden", refused is not None and refused.status == 403)
            self.say(wrong.relay.region, f"pickup with a wrong capability: refused {None if refused is None else refused.code}")
            for (recipient, _), mb in sorted(mailboxes.items(), key=lambda kv: (kv[0][0], kv[0][1])):
                picked = self._pickup_and_ack(mb, seen)
                content_ok = content_ok and all(
                    (s := expected.get(b.id)) is not None and b.blob == s.blob and b.digest == s.digest for b in picked
                )
                if picked:
                    self.say(mb.relay.region, f"client {recipient} picked up {len(picked)} blob(s) with its capability; acknowledged, deleted")
            again = 0
            for mb in mailboxes.values():
                try:
                    again += len(pickup(mb.relay.http, mb.tag, mb.secret))
                except RelayError:
                    again += 1
            self.say("clients", f"second pickup of every mailbox: {again} blob(s) left")
        exactly_once = content_ok and again == 0 and set(seen) == set(expected) and all(v == 1 for v in seen.values())
        self.check("delivered_exactly_once", exactly_once)
        self.check("picked_up_content_matches", content_ok)
        return sum(seen.values()), exactly_once

    @staticmethod
    def _pickup_and_ack(mb: _Mailbox, seen: Counter[str]) -> list[Any]:
        """One mailbox's blobs (digests checked by the SDK), each acknowledged; ``seen``
        counts the acknowledged (deleted) ones."""
        from registry.client.messaging import RelayError, acknowledge_blob, pickup

        try:
            picked = pickup(mb.relay.http, mb.tag, mb.secret)
        except RelayError as exc:
            raise _DemoError(f"pickup failed at {mb.relay.region}: HTTP {exc.status} {exc.code}") from None
        for b in picked:
            try:
                acknowledge_blob(mb.relay.http, b.id, mb.secret)
            except RelayError:
                continue
            seen[b.id] += 1
        return picked

    def _evidence(self, http: Any, relays: list[_Relay], sent: list[_Sent]) -> dict[str, Any]:
        from registry.client.messaging import relay_health

        o = self.outcomes
        # One record per acceptance and refusal; a consignment and an access record per delivery.
        expected_records = o.accepted + sum(o.refused.values()) + 2 * len(sent)
        with self.phase("evidence"):
            deadline = time.monotonic() + 90
            health: dict[str, Any] = {}
            while True:
                pending = sum(int(relay_health(r.http).get("evidence_pending") or 0) for r in relays)
                health = http.health().get("evidence") or {}
                size, anchored = int(health.get("size") or 0), int(health.get("anchored_size") or 0)
                if pending == 0 and size >= expected_records and anchored == size:
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.say("registry", f"evidence log: {size} records from {len(relays)} relays; checkpoint anchored at size {anchored}")
            self.check("evidence_records_logged", size == expected_records)
            self.check("evidence_anchored", anchored > 0 and anchored == size)
            latest = self.service.evidence.latest_anchor() if self.service.evidence is not None else None
            if latest is not None:
                self.say("ledger", f"EvidenceAnchor: size {latest.tree_size} root {latest.root_hash.hex()[:16]}… in block {latest.block_number}")
        return {
            "evidence_records": size,
            "expected_evidence_records": expected_records,
            "anchored_size": anchored,
            "anchor_block": None if latest is None else latest.block_number,
        }

    def _bundle(self, http: Any, relays: list[_Relay], sent: list[_Sent], identities: list[Any]) -> dict[str, Any]:
        from zk.evidence.bundle import EvidenceBundle, verify_bundle

        from registry.cli.evidence_commands import Trust, ledger_checks
        from registry.client.api import RegistryClientError, acknowledge
        from registry.client.messaging import relay_health

        with self.phase("bundle"):
            chosen = next((s for s in sent if s.evidence_id), None)
            if chosen is None:
                self.check("bundle_valid", False)
                return {"bundle_valid": False, "bundle_checks": {}}
            try:
                content = http.evidence_bundle(chosen.evidence_id, "anchored")
            except RegistryClientError as exc:
                self.check("bundle_valid", False)
                self.say("registry", f"bundle fetch failed: HTTP {exc.status} {exc.code}", "bold red")
                return {"bundle_valid": False, "bundle_checks": {}}
            bundle = EvidenceBundle.from_json(content)
            assert chosen.evidence_id is not None
            # The recipient acknowledges the acceptance record with its ZK-ID key.
            ack = acknowledge(bytes.fromhex(chosen.evidence_id), identities[chosen.recipient])
            bundle = replace(bundle, acknowledgement=ack)
            path = self.root / "bundle.json"
            path.write_text(bundle.to_json())
            issuers = {relay_health(r.http)["issuer"] for r in relays}
            assert self.service.evidence is not None
            trusted = self.service.evidence.verifier  # the log key of the registry we run
            # The anchor is read from the EvidenceAnchor contract, as `zkid evidence verify --rpc-url`.
            # As `zkid evidence verify` with the deployment's manifest: the anchor is read from
            # the trusted EvidenceAnchor, the acknowledgement's signer from group 0's members.
            trust = Trust(log_key=trusted, chain_id=self.manifest.chain_id,
                          anchor_contract=self.manifest.address("EvidenceAnchor"),
                          registry_contract=self.manifest.address("ZkIdRegistry"),
                          genesis_hash=self.manifest.genesis_hash.lower(), groups=[0])
            ledger = ledger_checks(self.rpc_url, trust)
            verdict = verify_bundle(bundle, trusted, ledger.anchor_lookup, trusted_issuers=issuers,
                                    group_root_check=ledger.group_root_check, member_check=ledger.member_check,
                                    trusted_anchor=trust.trusted_anchor())
        self.check("bundle_valid", verdict.valid and verdict.complete)
        self.say("verifier", f"bundle of blob {chosen.blob_id[:8]}… ({chosen.relay.region}): {'VALID' if verdict.valid else 'INVALID: ' + str(verdict.first_failure)}", "green" if verdict.valid else "bold red")
        for c in verdict.checks:
            self.say("verifier", f"  {c.status:<11} {c.name}: {c.detail}", "dim")
        return {
            "bundle_valid": verdict.valid and verdict.complete,
            "bundle_checks": {c.name: c.status for c in verdict.checks},
            "bundle_file": str(path),
        }


def _slot_of(proof: Any) -> int:
    from zk.relay_scope import decode_scope

    try:
        return decode_scope(int(proof.scope)).slot
    except (AttributeError, ValueError):
        return -1


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="outcomes")
    table.add_column("what")
    table.add_column("count / value", justify="right")
    table.add_row("sent", str(summary["sent"]))
    table.add_row("accepted", str(summary["accepted"]))
    for reason, count in summary["refused"].items():
        table.add_row(f"refused: {reason}", str(count))
    table.add_row("delivered (picked up, acknowledged)", str(summary["delivered"]))
    table.add_row("delivered exactly once", str(summary["delivered_exactly_once"]))
    table.add_row("evidence records / anchored size", f"{summary['evidence_records']} / {summary['anchored_size']}")
    table.add_row("bundle valid", str(summary["bundle_valid"]))
    table.add_row("proofs generated", f"{summary['proofs_generated']} in {summary['proof_seconds']:.1f} s")
    table.add_row("total time", f"{summary['seconds']:.1f} s")
    console.print(table)
    failed = [k for k, v in summary["expectations"].items() if not v]
    if failed:
        console.print(f"[bold red]expectations failed:[/bold red] {', '.join(failed)}")
    else:
        console.print(f"[bold green]all {len(summary['expectations'])} expectations hold[/bold green]")


# ---------------------------------------------------------------------------- offline


def _offline(members: int, as_json: bool) -> None:
    """The offline walkthrough: identities, a group, a proof on the official key, and the
    refusals from the registry's own ``Authorizer``. Nothing leaves the machine."""
    from zk.identity import Identity
    from zk.proof import generate_proof, verify_proof
    from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at
    from zk.tree import LeanIMT

    from rich.console import Console
    from rich.table import Table

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
