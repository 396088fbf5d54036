"""Every ``zkid`` command is documented in docs/cli.md (a test fails otherwise)."""

from __future__ import annotations

from pathlib import Path

from typing import Any

import typer.main

from registry.cli import app

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def _commands(group: Any, prefix: str) -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):  # a sub-group
            names.extend(_commands(command, path))
        else:
            names.append(path)
    return names


def test_every_command_is_documented() -> None:
    root = typer.main.get_command(app)
    commands = _commands(root, "zkid")
    assert "zkid proof verify" in commands
    text = DOC.read_text(encoding="utf-8")
    missing = [c for c in commands if f"`{c}" not in text]
    assert not missing, f"undocumented commands in docs/cli.md: {missing}"
