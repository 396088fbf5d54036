"""Helpers shared by the CLI modules: one-line errors, exit codes, passphrases, JSON output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

#: Options that several commands share, spelled once.
TrustedProxy = Annotated[
    Optional[list[str]],
    typer.Option(
        "--trusted-proxy",
        metavar="IP|CIDR",
        help="Reverse proxy (IP or CIDR) whose X-Forwarded-For names the client (repeatable; default: none, the peer address counts).",
        show_default=False,
    ),
]
SlotsFile = Annotated[
    Optional[Path],
    typer.Option("--slots", help="File of the slots this identity used (default: the identity file's name + .slots).", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def json_requested() -> bool:
    """Whether the running command was given ``--json`` (its ``as_json`` parameter)."""
    try:  # Typer >= 0.22 runs its own copy of click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older Typer on the public click
        from click import get_current_context  # type: ignore[no-redef,assignment,unused-ignore]

    ctx = get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


def fail(message: str, code: int = EXIT_USAGE, *, reason: str | None = None) -> NoReturn:
    """Print one line saying what is wrong and exit non-zero.

    Under ``--json`` the error is also printed on stdout as ``{"error": {"code", "message"}}``
    (``reason``: a machine-readable code, by default ``invalid_input`` for exit 2 and
    ``refused`` otherwise), so a script reads one JSON document whatever happened."""
    typer.echo(f"zkid: error: {message}", err=True)
    if json_requested():
        print_json({"error": {"code": reason or ("invalid_input" if code == EXIT_USAGE else "refused"), "message": message}})
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def print_result(as_json: bool, value: Any, text: str) -> None:
    """``value`` as JSON under ``--json``, else the line ``text``."""
    if as_json:
        print_json(value)
    else:
        typer.echo(text)


def passphrase(confirm: bool, env: str = "ZKID_PASSPHRASE") -> str:
    """The identity-file passphrase: from the environment, else asked on the terminal."""
    value = os.environ.get(env)
    if value is not None:
        if not value:
            fail(f"the passphrase in ${env} is empty: set it to a non-empty passphrase (or unset it to be asked)")
        return value
    if not sys.stdin.isatty():
        fail(f"no passphrase: set {env} or run in a terminal")
    answer: str = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
    if not answer:
        fail("the passphrase is empty")
    return answer


def base_url(value: str, flag: str, what: str) -> str:
    """``value`` as the base URL of a service (``what``: "registry", "relay") for ``flag``:
    http(s), without the API's ``/v1`` path (the commands add it), no trailing slash."""
    from urllib.parse import urlsplit

    if not value.startswith(("http://", "https://")):
        fail(f"{flag} must start with http:// or https://, got {value!r}")
    parts = urlsplit(value)
    if not parts.netloc:
        fail(f"{flag} has no host: {value!r}")
    segments = [s for s in parts.path.split("/") if s]
    if "v1" in segments:
        prefix = "/".join(segments[: segments.index("v1")])
        hint = f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
        fail(f"{flag} takes the {what}'s base URL, without the /v1 API path: try {hint}")
    if parts.query or parts.fragment:
        fail(f"{flag} takes the {what}'s base URL, without a query or fragment")
    return value.rstrip("/")


def read_file(path: Path) -> bytes:
    """The bytes of ``path``; one line saying why when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


def read_blob(path: Path) -> bytes:
    """The bytes of ``--blob``: a file, or stdin for ``-``; one line if unreadable."""
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
