"""``zkid send`` and ``zkid pickup``: a blob through a relay, from the command line.

``zkid send`` does the whole sender side of docs/relay.md with the SDK
(:mod:`registry.client.messaging`): the group's parameters and the sender's Merkle proof
from the registry, a fresh slot of the epoch, the send authorization
(docs/authorization.md), ``POST /v1/blobs``. ``zkid pickup`` reads a mailbox, writes each
blob to a directory (durably) and, with ``--ack``, acknowledges it so that the relay erases
it. Exit codes: 0 accepted / picked up, 1 refused (the reason is printed), 2 unusable
input or an unreachable registry or relay.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional, TypeVar

import typer

from registry.cli._common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, SlotsFile, base_url, fail, print_json, read_blob

if TYPE_CHECKING:
    from registry.client.api import RegistryClientError, RelaySendError
    from registry.client.messaging import RelayError
    from zk.relay_scope import RegistryRef

T = TypeVar("T")

DEFAULT_REGISTRY = "http://127.0.0.1:9545"
URL_ENV = "ZKID_URL"
TRUST_LIST_ENV = "ZKID_TRUST_LIST"

RelayUrl = Annotated[str, typer.Option("--relay", metavar="URL", help="The relay's base URL (e.g. http://127.0.0.1:9646).", show_default=False)]
Mailbox = Annotated[str, typer.Option("--mailbox", metavar="TAG", help="Mailbox tag: 32 bytes in hex (64 hex digits), e.g. from `openssl rand -hex 32`.", show_default=False)]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (errors too).")]
TrustListFile = Annotated[
    Optional[Path],
    typer.Option(
        "--trust-list",
        help=f"Trust list (TOML, docs/regions.md) naming the sender's home registry instead of --registry (default: ${TRUST_LIST_ENV}).",
        show_default=False,
    ),
]
HomeRegion = Annotated[
    Optional[str],
    typer.Option("--home", metavar="REGION", help="The sender's home region in the trust list (may be left out if the list names one registry).", show_default=False),
]


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("pickup")(pickup)


def _mailbox(text: str) -> bytes:
    from registry.client.messaging import parse_mailbox

    try:
        return parse_mailbox(text)
    except ValueError as exc:
        fail(f"--mailbox: {exc}")


def _pickup_secret(read: Callable[[Path], T], path: Path) -> T:
    """``read(path)`` of ``--pickup-secret``; an unreadable or malformed file is one line."""
    try:
        return read(path)
    except (OSError, ValueError) as exc:
        fail(f"--pickup-secret {path}: {exc.strerror or exc}" if isinstance(exc, OSError) else f"--pickup-secret: {exc}")


def _home_registry(registry: str | None, trust_list: Path | None, home: str | None) -> tuple[str, RegistryRef | None]:
    """The sender's registry: ``(base URL, expected deployment)``. From ``--trust-list``
    (or ``$ZKID_TRUST_LIST`` when ``--registry`` is not given) and ``--home``: the entry's
    ``registry_url`` and its ``(chain id, contract)``, which the registry must answer for;
    else ``--registry`` / ``$ZKID_URL`` / the default, unchecked (docs/regions.md)."""
    if registry is not None and trust_list is not None:
        fail("--registry and --trust-list name the sender's registry twice: give one of them")
    if trust_list is None and registry is None and os.environ.get(TRUST_LIST_ENV):
        trust_list = Path(os.environ[TRUST_LIST_ENV])
    if trust_list is None:
        if home is not None:
            fail(f"--home needs --trust-list FILE (or ${TRUST_LIST_ENV}): the trust list says where region {home}'s registry is")
        return base_url(registry or os.environ.get(URL_ENV) or DEFAULT_REGISTRY, "--registry", "registry"), None
    from registry.relay.trust_list import load_trust_list

    try:
        trusted = load_trust_list(trust_list)
    except ValueError as exc:
        fail(f"--trust-list: {exc}")
    regions = ", ".join(trusted.regions)
    if home is None:
        if len(trusted) > 1:
            fail(f"--home REGION is needed: the trust list {trust_list} names regions {regions}")
        entry = trusted.entries[0]
    else:
        found = trusted.by_region(home)
        if found is None:
            fail(f"--home {home}: no such region in the trust list {trust_list} (regions: {regions})")
        entry = found
    return base_url(entry.registry_url, "--trust-list registry_url", "registry"), entry.ref


def _registry_fail(exc: RegistryClientError, base: str, home: str | None = None) -> NoReturn:
    if exc.code == "wrong_registry":
        fail(
            f"the registry at {base} is not the trust list's: {exc.message} (a proof made with it would be for "
            "another registry); check the trust list entry's registry_url, chain_id and contract",
            EXIT_USAGE,
            reason="wrong_registry",
        )
    if exc.status == 0:  # unreachable, or no answer (registry/client/_http.py)
        fail(f"cannot reach the registry at {base}: {exc.message}", EXIT_USAGE, reason="unreachable")
    if exc.code in ("not_found", "method_not_allowed"):
        from registry.cli.service_commands import not_a_registry

        fail(not_a_registry(base, "--registry"), EXIT_USAGE, reason="not_a_registry")
    if exc.code in ("bad_response", "http_error", "unknown_group", "malformed", "invalid_commitment"):
        fail(f"{exc.code}: {exc.message}", EXIT_USAGE, reason=exc.code)
    if exc.code == "not_member" and home is not None:
        fail(
            f"refused by region {home}'s registry at {base}: not_member: {exc.message}; "
            f"is --home {home} the region where this identity registered?",
            EXIT_INVALID,
            reason=exc.code,
        )
    fail(f"refused by the registry: {exc.code}: {exc.message}", EXIT_INVALID, reason=exc.code)


#: What to do after a relay's refusal of a send, by code.
_SEND_HINTS = {
    "nullifier_reused": "this slot was used already",
    "mailbox_conflict": "the mailbox tag belongs to another pickup secret: choose another --mailbox",
    "authorization_unknown": "the slot may be spent: send again (a new slot is taken)",
    "authorization_unavailable": "nothing was spent: send again later",
    "no_answer": "the relay did not answer: the blob may have been accepted, and its slot is spent",
    "wrong_epoch": "check this computer's clock",
    "unknown_root": "the registry's tree is ahead of or behind the relay's ledger: send again in a moment",
    "group_not_served": "this relay does not serve the group (its --send-group options)",
    "insufficient_storage": "the relay is out of room: try another relay",
    "rate_limited": "too many requests from this address: wait a minute",
    "nullifier_authority_unavailable": "the sender's home registry did not confirm the slot: nothing was spent, send again later",
    "unknown_registry": "this relay does not trust the sender's registry: use a relay whose trust list names it (docs/regions.md)",
    "wrong_registry": "this relay serves another registry: use one that trusts the sender's (docs/regions.md)",
}


def _relay_send_fail(exc: RelaySendError, relay: str, explicit_slot: bool) -> NoReturn:
    if exc.code == "unreachable":
        fail(f"cannot reach the relay at {relay}: {exc.message}", EXIT_USAGE, reason="unreachable")
    if exc.code in ("not_found", "method_not_allowed", "http_error", "bad_response"):
        fail(f"{relay} does not serve a relay's POST /v1/blobs (HTTP {exc.status}): --relay takes a relay's base URL", EXIT_USAGE, reason="not_a_relay")
    hint = _SEND_HINTS.get(exc.code)
    if exc.code == "nullifier_reused":
        hint = "this slot was used already: leave out --slot (a free slot is picked) or give another" if explicit_slot else (
            "the slots of this epoch were used elsewhere (another copy of this identity?): send again later"
        )
    fail(f"refused by the relay: {exc.code}: {exc.message}" + (f" ({hint})" if hint else ""), EXIT_INVALID, reason=exc.code)


def send(
    relay: RelayUrl,
    identity: Annotated[Path, typer.Option("--identity", help="Identity file of the sender (encrypted; passphrase $ZKID_PASSPHRASE or prompt).", show_default=False)],
    blob: Annotated[Path, typer.Option("--blob", help="The (already encrypted) blob to send; '-' reads stdin.", show_default=False)],
    mailbox: Mailbox,
    pickup_secret: Annotated[
        Path,
        typer.Option(
            "--pickup-secret",
            help="File holding the mailbox's pickup secret (hex); created with a fresh random secret (mode 0600) if missing.",
            show_default=False,
        ),
    ],
    registry: Annotated[
        Optional[str],
        typer.Option("--registry", metavar="URL", help=f"The registry's base URL, for the group and the Merkle proof (default: ${URL_ENV} or {DEFAULT_REGISTRY}).", show_default=False),
    ] = None,
    trust_list: TrustListFile = None,
    home: HomeRegion = None,
    group: Annotated[int, typer.Option("--group", help="The send group the sender is a member of.", min=0)] = 0,
    slot: Annotated[
        Optional[int],
        typer.Option("--slot", help="Send slot of this epoch (default: the lowest one the --slots file has not used).", min=0, show_default=False),
    ] = None,
    slots_file: SlotsFile = None,
    ask_proof: Annotated[
        bool,
        typer.Option(
            "--ask-proof",
            help="Ask the registry for this member's Merkle proof instead of reading the whole group (faster for big groups, but names the sender to the registry).",
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Send a blob to a mailbox through a relay, as an anonymous member of a send group.

    Reads the group's parameters and members from the registry, takes a free slot of the
    epoch, proves the send authorization (docs/authorization.md) and posts the blob to
    the relay, which may be in any region. With --trust-list and --home the registry is
    the home region's, and it must answer for the chain and contract the list names.
    Prints the blob id and the evidence id. Exit 0 accepted, 1 refused (the reason is
    printed), 2 unusable input."""
    from registry.client.api import RegistryClient, RegistryClientError, RelaySendError, SendSlots, SlotsExhaustedError
    from registry.client.messaging import load_or_create_pickup_secret, send as send_message

    from registry.cli.service_commands import _open_slots
    from registry.cli.zk_commands import load_identity_file

    relay_base = base_url(relay, "--relay", "relay")
    registry_base, home_ref = _home_registry(registry, trust_list, home)
    tag = _mailbox(mailbox)
    content = read_blob(blob)
    if not content:
        fail(f"{blob} is empty: there is nothing to send")
    who = load_identity_file(identity)
    secret, created = _pickup_secret(load_or_create_pickup_secret, pickup_secret)
    if created:
        typer.echo(f"pickup secret: created {pickup_secret} (the recipient needs it and the mailbox tag to pick up)", err=True)
    slots = _open_slots(SendSlots, slots_file, identity)
    try:
        with RegistryClient(registry_base) as client:
            result = send_message(
                client, relay_base, who, content, tag, secret, slots, group_id=group, slot=slot, ask_proof=ask_proof, home_registry=home_ref
            )
    except RelaySendError as exc:  # (a RegistryClientError too: first)
        _relay_send_fail(exc, relay_base, slot is not None)
    except RegistryClientError as exc:
        _registry_fail(exc, registry_base, home)
    except SlotsExhaustedError as exc:
        fail(f"{exc}: wait for the next epoch", EXIT_INVALID, reason="slots_exhausted")
    except ValueError as exc:
        fail(str(exc))
    finally:
        slots.close()
    _show_sent(result, as_json)
    raise typer.Exit(EXIT_OK)


def _show_sent(result: Any, as_json: bool) -> None:
    """``zkid send``'s answer: the relay's blob id, the evidence id, the slot used."""
    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(f"accepted: blob id {result.blob_id}")
    typer.echo(f"evidence id: {result.evidence_id if result.evidence_id is not None else 'none (the relay keeps no evidence log)'}")
    typer.echo(f"digest {result.digest}, group {result.group_id}, epoch {result.epoch}, slot {result.slot}")


def _relay_fail(exc: RelayError, relay: str) -> NoReturn:
    if exc.status == 0:  # unreachable, or no answer (registry/client/_http.py)
        fail(f"cannot reach the relay at {relay}: {exc.message}", EXIT_USAGE, reason="unreachable")
    if exc.code in ("not_found", "method_not_allowed", "http_error", "bad_response"):
        fail(f"{relay} did not answer as a relay ({exc.code}: {exc.message}): --relay takes a relay's base URL", EXIT_USAGE, reason=exc.code)
    if exc.code == "forbidden":
        fail(f"refused by the relay: forbidden: {exc.message} (the mailbox belongs to another pickup secret)", EXIT_INVALID, reason="forbidden")
    fail(f"refused by the relay: {exc.code}: {exc.message}", EXIT_INVALID, reason=exc.code)


def pickup(
    relay: RelayUrl,
    mailbox: Mailbox,
    pickup_secret: Annotated[Path, typer.Option("--pickup-secret", help="File holding the mailbox's pickup secret (hex), as `zkid send` created it.", show_default=False)],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", metavar="DIR", help="Directory to write each blob to, as ID.blob (default: only list the blobs).", show_default=False),
    ] = None,
    ack: Annotated[
        bool,
        typer.Option("--ack", help="Acknowledge each blob once it is written to --out: the relay erases it (needs --out)."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Pick up the blobs of a mailbox from a relay; with --ack, have the relay erase them.

    Every blob's SHA-256 digest is checked, and it is written to --out and flushed to disk
    before it is acknowledged. Exit 0 (also for an empty mailbox), 1 refused (a wrong
    pickup secret), 2 unusable input."""
    from registry.client.messaging import RelayError, acknowledge_blob, read_pickup_secret, save_blob
    from registry.client.messaging import pickup as pickup_mailbox

    relay_base = base_url(relay, "--relay", "relay")
    tag = _mailbox(mailbox)
    if ack and out is None:
        fail("--ack needs --out DIR: a blob is erased once acknowledged, so it must be saved first")
    secret = _pickup_secret(read_pickup_secret, pickup_secret)
    try:
        blobs = pickup_mailbox(relay_base, tag, secret)
    except RelayError as exc:
        _relay_fail(exc, relay_base)
    shown: list[dict[str, Any]] = []
    for item in blobs:
        entry: dict[str, Any] = {"id": item.id, "size": len(item.blob), "digest": item.digest.hex(), "received_at": item.received_at}
        if out is not None:
            try:
                entry["path"] = str(save_blob(out, item))
            except OSError as exc:
                fail(f"cannot write blob {item.id} to {out}: {exc.strerror or exc} (not acknowledged)")
        if ack:
            try:
                acknowledge_blob(relay_base, item.id, secret)
            except RelayError as exc:
                _relay_fail(exc, relay_base)
            entry["acknowledged"] = True
        shown.append(entry)
    if as_json:
        print_json({"blobs": shown})
    else:
        for entry in shown:
            where = f" -> {entry['path']}" if "path" in entry else ""
            done = " (acknowledged: erased on the relay)" if entry.get("acknowledged") else ""
            typer.echo(f"{entry['id']}  {entry['size']} bytes{where}{done}")
        typer.echo(f"{len(shown)} blob(s)" + ("" if out is not None or not shown else "; --out DIR saves them"))
    raise typer.Exit(EXIT_OK)
