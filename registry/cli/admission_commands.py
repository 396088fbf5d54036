"""``zkid admission set|invite create``: the operator's admission policies (docs/admission.md).

Both talk to a running registry over HTTP with the operator token
(``$ZKID_OPERATOR_TOKEN``), like ``zkid group create``.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from typing import Annotated, Any, Optional

import typer

from registry.cli._common import EXIT_USAGE, AsJson, fail, print_json

admission_app = typer.Typer(help="Admission policies of the registry's groups (operator).", no_args_is_help=True)
invite_app = typer.Typer(help="Single-use invite codes of `invite` groups (operator).", no_args_is_help=True)
admission_app.add_typer(invite_app, name="invite")

_DURATION = re.compile(r"([1-9][0-9]{0,9})([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Url = Annotated[Optional[str], typer.Option("--url", help="Registry URL (default: $ZKID_URL or http://127.0.0.1:9545).", show_default=False)]


def parse_expiry(text: str, now: float) -> int:
    """``--expires``: a duration from now (``90s``, ``30m``, ``24h``, ``7d``) or an ISO 8601
    time (``2030-01-31T12:00:00Z``; without a zone: UTC). Returns unix seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match:
        return int(now) + int(match.group(1)) * _UNIT[match.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--expires {text!r}: give a duration (90s, 30m, 24h, 7d) or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def policy_body(
    policy: str | None, admission_group: int | None, round_: int | None, send: bool | None
) -> dict[str, Any]:
    """The API's ``admission`` object from the CLI options (None: left to the registry)."""
    body: dict[str, Any] = {}
    if policy is not None:
        if policy not in ("zk", "invite", "open", "closed"):
            fail("--policy must be zk, invite, open or closed")
        body["policy"] = policy
    if admission_group is not None:
        body["admission_group"] = admission_group
    if round_ is not None:
        body["round"] = round_
    if send is not None:
        body["send"] = send
    return body


def _token() -> str:
    token = os.environ.get("ZKID_OPERATOR_TOKEN")
    if not token:
        fail("set $ZKID_OPERATOR_TOKEN to the registry's operator token")
    return token


@admission_app.command("set")
def admission_set(
    group: Annotated[int, typer.Option("--group", help="Group id.", min=0)],
    policy: Annotated[str, typer.Option("--policy", help="zk, invite, open or closed.")],
    admission_group: Annotated[
        Optional[int], typer.Option("--admission-group", help="Policy zk: the admission group (checked persons).", min=0, show_default=False)
    ] = None,
    round_: Annotated[Optional[int], typer.Option("--round", help="Policy zk: the admission round (a new round re-admits everyone once).", min=0, show_default=False)] = None,
    send: Annotated[Optional[bool], typer.Option("--send/--no-send", help="A send group (default: yes, no for closed).", show_default=False)] = None,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """Set a group's admission policy (operator; token from $ZKID_OPERATOR_TOKEN)."""
    from registry.cli.service_commands import _registry, _url

    body = policy_body(policy, admission_group, round_, send)
    with _registry(_url(url), EXIT_USAGE) as client:
        data = client.set_admission(group, body, _token())
    if as_json:
        print_json(data)
    else:
        typer.echo(f"group {group}: {describe(data.get('admission'))}")


def describe(admission: Any) -> str:
    """One line about a group's admission record (None: not served)."""
    if not isinstance(admission, dict):
        return "no admission policy (not served)"
    text = f"policy {admission.get('policy')}"
    if admission.get("policy") == "zk":
        text += f" (admission group {admission.get('admission_group')}, round {admission.get('round')})"
    return text + (", send group" if admission.get("send") else ", not a send group")


@invite_app.command("create")
def invite_create(
    group: Annotated[int, typer.Option("--group", help="Group id (policy invite).", min=0)],
    count: Annotated[int, typer.Option("--count", help="Number of codes (at most 1000).", min=1, max=1000)] = 1,
    expires: Annotated[str, typer.Option("--expires", help="Expiry: a duration (90s, 30m, 24h, 7d) or an ISO 8601 time.")] = "7d",
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """Mint single-use invite codes (printed once: the registry keeps only their hashes)."""
    from registry.cli.service_commands import _registry, _url

    try:
        expires_at = parse_expiry(expires, time.time())
    except ValueError as exc:
        fail(str(exc))
    if expires_at <= time.time():
        fail("--expires is in the past")
    with _registry(_url(url), EXIT_USAGE) as client:
        data = client.create_invites(group, count, expires_at, _token())
    if as_json:
        print_json(data)
    else:
        for code in data["invites"]:
            typer.echo(code)


def register(app: typer.Typer) -> None:
    app.add_typer(admission_app, name="admission")
