"""Helpers shared by the CLI modules: one-line errors, exit codes, passphrases, JSON output."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import typer

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one line saying what is wrong and exit non-zero."""
    typer.echo(f"zkid: error: {message}", err=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def passphrase(confirm: bool, env: str = "ZKID_PASSPHRASE") -> str:
    """The identity-file passphrase: from the environment, else asked on the terminal."""
    value = os.environ.get(env)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        fail(f"no passphrase: set {env} or run in a terminal")
    answer: str = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
    return answer
