"""``zkid ... --help`` follows one convention (registry/cli/help.py, docs/cli.md): an
example in every command's help, values named (never ``<bool>``/``<str>``), defaults
shown one way, nothing cut at 80 columns; ``zkid --version``."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import typer.main

from registry.cli import app
from tests.support.cli import invoke, run_zkid


def _commands(group: Any, prefix: list[str]) -> list[list[str]]:
    paths = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            paths.extend(_commands(command, [*prefix, name]))
        else:
            paths.append([*prefix, name])
    return paths


COMMANDS = _commands(typer.main.get_command(app), [])
TYPE_LABEL = re.compile(r"<(?:bool|str|int|float|path|file|dir|text|integer|[a-z]+ range|list\[[a-z]+\])>")


def test_the_walk_sees_every_command() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"register", "relay", "up", "ledger up", "evidence bundle", "proof generate"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_help_has_an_example_and_no_type_noise(command: list[str]) -> None:
    out = invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    text = out.stdout
    assert re.search(r"Example:\s+(?:\S+=\S+\s+)*zkid ", text), text
    assert not TYPE_LABEL.search(text), TYPE_LABEL.search(text)
    assert "[default:" not in text  # defaults are "(default: X)", in the help text
    assert "…" not in text  # nothing cut


def test_help_on_a_real_process_at_80_columns() -> None:
    """``zkid register --help`` as a user runs it in an 80-column terminal: whole words,
    named values, the example, exit 0, nothing on stderr."""
    out = run_zkid("register", "--help", env={**os.environ, "COLUMNS": "80"}, timeout=120)
    assert out.returncode == 0 and out.stderr == ""
    assert "--wait " in out.stdout and "--wait <bool>" not in out.stdout and "<str>" not in out.stdout
    assert "--url URL" in out.stdout and re.search(r"Usage: .* register \[OPTIONS\] \[COMMITMENT\]\n", out.stdout)
    assert "$ZKID_ADMISSION_PASSPHRASE" in out.stdout  # not cut to "$ZKID_ADMISSION_PASSPHRAS…"
    assert "zkid register --identity me.id --wait --until final" in out.stdout


def test_version() -> None:
    out = run_zkid("--version", timeout=120)
    assert out.returncode == 0 and out.stderr == ""
    assert re.fullmatch(r"zkid \(letro-zkid\) \d+\.\d+\.\d+\S*\n", out.stdout), out.stdout


GROUPS = [[], *sorted({tuple(c[:-1]) for c in COMMANDS if len(c) > 1})]


@pytest.mark.parametrize("group", GROUPS, ids=[" ".join(g) or "zkid" for g in GROUPS])
def test_command_lists_show_whole_sentences(group: list[str]) -> None:
    """``zkid --help`` and each group's help list their commands by a whole first sentence,
    wrapped, never cut with "..." (click cuts them to the terminal's width by default)."""
    out = invoke(app, [*group, "--help"], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    listing = out.stdout.split("Commands:\n", 1)[1]
    assert "..." not in listing, listing
    assert re.search(r"\b\w+-\n", out.stdout) is None, out.stdout  # no word broken at a hyphen
    entries = re.split(r"\n  (?=\S)", "\n" + listing.rstrip())[1:]
    assert entries and all(" ".join(e.split()).endswith((".", ")")) for e in entries), entries


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_one_example_per_help(command: list[str]) -> None:
    """The example is shown once, unwrapped (a wrapped example breaks when copied)."""
    text = invoke(app, [*command, "--help"], env={"COLUMNS": "80"}).stdout
    assert text.count("Example:") == 1, text
    example = text.split("Example:\n", 1)[1].splitlines()[0].strip()
    assert example.startswith(("zkid ", "ZKID_")), example


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_fits_an_80_column_terminal(command: list[str]) -> None:
    """Wrapped to the terminal's width: at ``COLUMNS=80`` no line is wider than 80, except the
    example (never wrapped: it is copied as it is)."""
    text = invoke(app, [*command, "--help"], env={"COLUMNS": "80"}).stdout
    example = text.split("Example:\n", 1)[1].splitlines()[0]
    wide = [line for line in text.splitlines() if len(line) > 80 and line != example]
    assert wide == [], wide
