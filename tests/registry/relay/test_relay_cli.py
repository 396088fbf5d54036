"""``zkid relay`` as a real process (registry/cli/relay_commands.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from registry.ledger.deploy import save_manifest

# The relay command on the main app, whether or not the lead has registered it yet.
SNIPPET = (
    "from registry.cli import app\n"
    "if not any(c.name == 'relay' for c in app.registered_commands):\n"
    "    from registry.cli import relay_commands; relay_commands.register(app)\n"
    "app(prog_name='zkid')\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_zkid_relay_serves_and_refuses_bad_options(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    bad = subprocess.run(
        [sys.executable, "-c", SNIPPET, "relay", "--data-dir", str(tmp_path), "--auth", "registry"],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "registry_url" in bad.stderr

    save_manifest(tmp_path / "relay", deployed.manifest)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SNIPPET, "relay", "--region", "eu-test", "--data-dir", str(tmp_path / "relay"),
         "--rpc-url", anvil.rpc_url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert health is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert health["region"] == "eu-test" and health["auth_mode"] == "local" and health["blobs"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (tmp_path / "relay" / "relay.sqlite").exists()
