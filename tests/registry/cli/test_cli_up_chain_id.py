"""``zkid up --chain-id N`` (setting ``ledger_chain_id``): a second region's registry on the
same machine gets a ledger of its own chain id, and its deployment and API name it
(docs/regions.md); another id for the data directory's existing chain is one line, exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from registry.ledger.anvil import free_port
from tests.support.cli import ROOT, ZKID, read_registry_url, run_zkid, stop_process

ENV = {k: v for k, v in os.environ.items() if not k.startswith("ZKID_")}


def test_up_with_a_chain_id_then_another_one_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "gcc"
    args = ["up", "--data-dir", str(data), "--port", "0", "--ledger-port", str(free_port()), "--region", "gcc"]
    proc = subprocess.Popen([*ZKID, *args, "--chain-id", "31338"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        seen: list[str] = []
        url = read_registry_url(proc, seen)
        assert any(line.startswith("deployed: chain 31338,") for line in seen), seen
        group = httpx.get(f"{url}/v1/groups/0", timeout=30).json()
        assert group["chain_id"] == 31338
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        stop_process(proc)
    refused = run_zkid(*args, "--chain-id", "31339", env=ENV, timeout=120)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error:") and "chain id 31338, not 31339" in lines[0], refused.stderr
