"""``zkid up`` as a real process: a busy HTTP port is one line before
any ledger or deployment; an idle local ledger still mines, so a registration reaches
``final`` (``zkid register --wait --until final``) and the outbox empties, without other
traffic; SIGTERM stops it with exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from registry.ledger.anvil import free_port
from tests.support.cli import ROOT, ZKID, read_registry_url, run_zkid, stop_process
from tests.support.wait import wait_until

ENV = {k: v for k, v in os.environ.items() if not k.startswith("ZKID_")}


def test_busy_http_port_is_one_line_before_the_ledger_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run_zkid("up", "--data-dir", str(data_dir), "--port", str(port), "--ledger-port", str(free_port()),
                       env=ENV, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error:"), out.stderr
    assert f"HTTP port {port}" in lines[0] and "--port" in lines[0] and "Errno" not in lines[0]
    # Checked first: no ledger was started, nothing deployed.
    assert not (data_dir / "deployment.json").exists() and not (data_dir / "anvil.pid").exists()


def test_busy_ledger_port_names_the_ledger_flag(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        ledger_port = busy.getsockname()[1]
        out = run_zkid("up", "--data-dir", str(tmp_path / "data"), "--port", "0", "--ledger-port", str(ledger_port),
                       env=ENV, timeout=120)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert f"ledger port {ledger_port}" in line and "--ledger-port" in line and "`zkid ledger up`" not in line


def test_an_idle_local_ledger_reaches_final(tmp_path: Path) -> None:
    """One registration and no other traffic: the ledger's timer blocks take it to the
    confirmation depth; ``--wait --until final`` reports progress on stderr and ends
    ``final``; health's outbox counts return to 0."""
    env = {**ENV, "ZKID_LEDGER_BLOCK_TIME": "1", "ZKID_CONFIRMATIONS": "3", "ZKID_BATCH_MIN_SIZE": "1",
           "ZKID_BATCH_INTERVAL": "0.2"}
    proc = subprocess.Popen(
        [*ZKID, "up", "--data-dir", str(tmp_path / "data"), "--port", "0", "--ledger-port", str(free_port())],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        url = read_registry_url(proc, seen)
        assert "OpenAPI /openapi.json" in seen[-1] and "/docs" not in seen[-1], seen[-1]  # /docs is 404
        ledger_line = proc.stdout.readline()
        assert ledger_line.startswith("ledger:") and "a block every 1 s when idle" in ledger_line, ledger_line
        # The evidence log's public key, which a verifier pins (`zkid evidence verify --log-key`).
        from zk.evidence.note import NoteSigner

        key_line = next(line for line in iter(proc.stdout.readline, "") if line.startswith(("evidence log key:", "evidence:")))
        signer = NoteSigner.from_skey((tmp_path / "data" / "log.key").read_text().strip())
        assert key_line.split()[3] == signer.verifier().vkey(), key_line

        # A second `zkid up` or a reindex on the same directory: one line, before any ledger
        # or file is touched (the running registry's index is still in place).
        data_dir = tmp_path / "data"
        index = (data_dir / "index.sqlite").stat()
        second = run_zkid("up", "--data-dir", str(data_dir), "--port", "0", "--ledger-port", str(free_port()), env=env, timeout=120)
        reindex = run_zkid("reindex", "--data-dir", str(data_dir), env=env, timeout=120)
        for refused, prefix in ((second, "cannot open the registry"), (reindex, "cannot reindex")):
            assert refused.returncode == 2 and refused.stdout == "", (refused.stdout, refused.stderr)
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"zkid: error: {prefix}"), refused.stderr
            assert f"is in use by process {proc.pid}" in lines[0]
        assert (data_dir / "index.sqlite").stat().st_ino == index.st_ino

        out = run_zkid("register", "4242", "--url", url, "--wait", "--until", "final", "--timeout", "180", env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("accepted: status final, index 0"), out.stdout
        assert "waiting for final:" in out.stderr  # progress, on stderr

        def settled() -> bool:
            health = httpx.get(f"{url}/v1/health", timeout=10).json()
            return health["outbox_pending"] == 0 and health["outbox_unconfirmed"] == 0

        wait_until(settled, 120, "the outbox to empty", interval=0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert "ledger stopped" in proc.stdout.read()
    finally:
        stop_process(proc)


def test_register_until_takes_included_or_final() -> None:
    out = run_zkid("register", "1", "--until", "mined", "--url", "http://127.0.0.1:9", env=ENV, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "zkid: error: --until takes included or final, not 'mined'"
    ]
