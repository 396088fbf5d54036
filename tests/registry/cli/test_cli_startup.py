"""`zkid` start-up: a command imports only what it uses (no timing assertions: the modules
a process loaded are checked, in a fresh interpreter each time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.cli import app, lazy_app

#: Heavy stacks that neither `zkid --help` nor an offline command may load.
HEAVY = ("web3", "eth_account", "fastapi", "uvicorn", "rich", "zk.evidence.bundle", "py_ecc")

_PROBE = """
import json, sys
sys.argv = ["zkid", *json.loads(sys.argv[1])]
import registry.cli
try:
    registry.cli.main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy} or m in {heavy})))
"""


def _loaded(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    code = _PROBE.replace("{heavy}", repr(set(HEAVY)))
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, timeout=300, cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_help_loads_no_heavy_module() -> None:
    assert _loaded(["--help"]) == []


def test_proof_generate_loads_no_ledger_web_or_evidence_stack(tmp_path: Path) -> None:
    env = {"ZKID_PASSPHRASE": "start-up test"}
    made = subprocess.run(
        [sys.executable, "-m", "registry.cli", "identity", "create", "--out", str(tmp_path / "id.json"), "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )
    assert made.returncode == 0, made.stderr
    (tmp_path / "group.txt").write_text(json.loads(made.stdout)["commitment"] + "\n")
    args = ["proof", "generate", "--identity", "id.json", "--group", "group.txt", "--message", "1", "--scope", "2", "--out", "p.json"]
    assert _loaded(args, cwd=tmp_path, env=env) == []
    assert json.loads((tmp_path / "p.json").read_text())["merkleTreeDepth"] == 1  # the proof was made


@pytest.mark.parametrize("args", [["--help"], ["proof", "--help"], ["up", "--help"], ["group", "create", "--help"]])
def test_lazy_app_prints_the_same_help(args: list[str]) -> None:
    runner = CliRunner()
    full = runner.invoke(app, args, prog_name="zkid")
    lazy = runner.invoke(lazy_app(args), args, prog_name="zkid")
    assert full.exit_code == lazy.exit_code == 0
    assert lazy.output == full.output


def test_lazy_app_builds_only_the_named_command() -> None:
    lazy = lazy_app(["proof", "generate", "--help"])
    assert lazy is not app
    built = [g for g in lazy.registered_groups if g.typer_instance is not None and g.typer_instance.registered_commands]
    assert [g.name for g in built] == ["proof"]
    assert lazy_app(["--help", "proof"]) is app  # a root option first: the whole app
    assert lazy_app(["no-such-command"]) is app  # click's own error and suggestions
