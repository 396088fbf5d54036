"""``zkid relay`` as a real process (registry/cli/relay_commands.py)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.ledger.deploy import save_manifest
from tests.registry.relay.support import relay_config_values
from tests.support.cli import ZKID, run_zkid, wait_serving
from tests.support.net import free_port
from tests.support.wait import wait_until



def test_zkid_relay_serves_and_refuses_bad_options(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    bad = run_zkid("relay", "--data-dir", str(tmp_path), "--auth", "registry", timeout=60)
    assert bad.returncode == 2 and "registry_url" in bad.stderr

    save_manifest(tmp_path / "relay", deployed.manifest)
    port = free_port()
    proc = subprocess.Popen(
        [*ZKID, "relay", "--region", "eu-test", "--data-dir", str(tmp_path / "relay"),
         "--rpc-url", anvil.rpc_url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:

        def alive() -> None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr is not None else "no answer"

        health = wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).json(), 60,
                            "the relay's health", interval=0.1, ignore=(httpx.HTTPError,), check=alive)
        assert health["region"] == "eu-test" and health["auth_mode"] == "local" and health["blobs"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (tmp_path / "relay" / "blobs").is_dir()


@contextlib.contextmanager
def _relay_process(data_dir: Path, rpc_url: str, manifest: Any, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``zkid relay`` as a real process; ready once its port accepts connections (uvicorn
    listens after the app's startup), without an HTTP request that would count against
    the rate limit."""
    save_manifest(data_dir, manifest)
    port = free_port()
    proc = subprocess.Popen(
        [*ZKID, "relay", "--data-dir", str(data_dir), "--rpc-url", rpc_url,
         "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_serving(proc, port, "the relay")
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


DEEP = 100_000


def test_hostile_json_bodies_do_not_kill_the_relay(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    """~200 KB of ``[[[[`` killed the relay (SIGSEGV, exit 139, nothing logged): now every
    such body is a 4xx and the process keeps serving."""
    bodies = {
        b"[" * 2 * DEEP: (400, "too_deep"),
        b'{"a":' * DEEP: (400, "too_deep"),
        b"[" * DEEP + b"]" * DEEP: (400, "too_deep"),
        b'{"mailbox": "' + b"ab" * 32 + b'", "mailbox": "' + b"cd" * 32 + b'"}': (400, "duplicate_key"),
        b'{"group_id": ' + b"7" * 5000 + b"}": (422, "malformed"),
        b'{"group_id": NaN}': (422, "malformed"),
    }
    with _relay_process(tmp_path / "relay", anvil.rpc_url, deployed.manifest) as (proc, url), httpx.Client(
        base_url=url, timeout=60
    ) as http:
        for raw, (status, code) in bodies.items():
            r = http.post("/v1/blobs", content=raw, headers={"Content-Type": "application/json"})
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
            assert proc.poll() is None
        # The other routes take no body: a small limit, before anything reads it.
        r = http.post(f"/v1/blobs/{'0' * 32}/ack", content=b"[" * DEEP, headers={"X-Pickup-Capability": "ab" * 16})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert http.get("/v1/health").status_code == 200
        assert proc.poll() is None


def _connection_ips(data_dir: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(data_dir / "access.log.sqlite")) as db:
        return {str(ip) for (ip,) in db.execute("SELECT ip FROM connections")}


@pytest.mark.parametrize("trusted", [False, True], ids=["no-proxy", "trusted-proxy"])
def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path, anvil: Any, deployed: Any, trusted: bool) -> None:
    """A client on the relay's host (or behind a local reverse proxy or onion service) sets
    X-Forwarded-For: ignored by default, so the per-IP rate limit and the connection log
    see the real peer; believed only from a proxy the operator names."""
    data_dir = tmp_path / "relay"
    extra = ["--rate-limit", "3", *(["--trusted-proxy", "127.0.0.1"] if trusted else [])]
    with _relay_process(data_dir, anvil.rpc_url, deployed.manifest, *extra) as (proc, url), httpx.Client(
        base_url=url, timeout=60
    ) as http:
        statuses = [http.get("/v1/health", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(6)]
        proc.terminate()  # graceful (uvicorn then re-raises SIGTERM): the connection log is flushed
        proc.wait(timeout=30)
    if trusted:
        assert statuses == [200] * 6
        assert _connection_ips(data_dir) == {f"203.0.113.{i}" for i in range(6)}
    else:
        assert statuses == [200, 200, 200, 429, 429, 429]
        assert _connection_ips(data_dir) == {"127.0.0.1"}


def test_trusted_proxy_must_be_an_address(tmp_path: Path) -> None:
    out = run_zkid("relay", "--data-dir", str(tmp_path), "--rpc-url", "http://127.0.0.1:9", "--trusted-proxy", "*",
                   timeout=60)
    assert out.returncode == 2 and "--trusted-proxy" in out.stderr and len(out.stderr.strip().splitlines()) == 1


_HOSTILE = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep-objects": '{"a":' * 100_000,
    "duplicate-key": '{"version": 1, "version": 1}',
    "not-an-object": "[1, 2]",
}


@pytest.mark.parametrize("option", ["--manifest", "--keystore"])
@pytest.mark.parametrize("content", list(_HOSTILE.values()), ids=list(_HOSTILE))
def test_hostile_manifest_or_keystore_is_one_error_line(tmp_path: Path, option: str, content: str) -> None:
    """A manifest or keystore file nested deeply, with a duplicate key or of the wrong
    shape: exit 2 with one line, never a traceback (a hostile file must not crash the parser
    or reach the user as a stack dump)."""
    hostile = tmp_path / "hostile.json"
    hostile.write_text(content)
    if option == "--manifest":
        args = ["--rpc-url", "http://127.0.0.1:9", "--manifest", str(hostile)]
    else:  # registry authorization: no manifest needed, the keystore is read for evidence
        args = ["--auth", "registry", "--registry-url", "http://127.0.0.1:9", "--evidence-url", "http://127.0.0.1:9",
                "--chain-id", "31337", "--keystore", str(hostile)]
    out = run_zkid("relay", "--data-dir", str(tmp_path / "relay"), *args, timeout=60,
                   env={**os.environ, "ZKID_RELAY_PASSWORD": "pw"})
    assert out.returncode == 2, (out.returncode, out.stderr[-800:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error:") and str(hostile) in lines[0], out.stderr[-800:]


def _start_relay(*args: str) -> tuple[subprocess.Popen[str], list[str], str]:
    """``zkid relay args...``; its start-up lines up to the data line, and its URL."""
    import re

    proc = subprocess.Popen([*ZKID, "relay", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    while not (lines and lines[-1].startswith("data:")):
        line = proc.stdout.readline()
        assert line, f"the relay exited ({proc.wait(30)}): {proc.stderr.read() if proc.stderr else ''}"
        lines.append(line.rstrip("\n"))
    found = re.match(r"relay: +(http://127\.0\.0\.1:(\d+)) ", lines[0])
    assert found and found.group(2) != "0", lines
    return proc, lines, found.group(1)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM: the relay stops in order, says so and exits 0; its remaining stdout."""
    import signal

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    rest = proc.stdout.read() if proc.stdout else ""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return rest


def test_relay_says_where_it_is_and_when_it_stops(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    """With ``--port 0``: the real URL, the authorization path, the ledger and the manifest
    at start; ``relay stopped`` and exit 0 on SIGTERM."""
    data_dir = tmp_path / "relay"
    save_manifest(data_dir, deployed.manifest)
    proc, lines, url = _start_relay("--data-dir", str(data_dir), "--rpc-url", anvil.rpc_url, "--port", "0",
                                    "--send-group", "0")
    try:
        assert lines[1] == "auth:     local, on the ledger (send groups: 0)", lines
        assert lines[2] == f"ledger:   {anvil.rpc_url}"
        assert lines[3] == f"manifest: {data_dir.resolve() / 'deployment.json'}"
        wait_until(lambda: httpx.get(f"{url}/v1/health", timeout=5).json()["status"] == "ok", 60, "health ok",
                   ignore=(httpx.HTTPError,))
    finally:
        rest = _stop(proc) if proc.poll() is None else ""
    assert rest.strip().splitlines()[-1] == "relay stopped"


def test_relay_config_file_busy_port_and_degraded_health(tmp_path: Path) -> None:
    """``--config`` (TOML, flags win); a busy port is one line naming --port (exit 2, not
    uvicorn's exit 3 and errno); an unreachable registry and evidence log make health
    ``degraded`` with both reasons."""
    import socket

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = tmp_path / "relay.toml"
    config.write_text(
        f'auth = "registry"\nregistry_url = "{dead}"\nevidence_url = "{dead}"\nchain_id = 31337\n'
        f'region = "from-file"\nport = 0\ndata_dir = "{tmp_path / "relay"}"\nmessage_limit = 7\n'
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        out = run_zkid("relay", "--config", str(config), "--port", str(taken), timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"zkid: error: HTTP port {taken} on 127.0.0.1 is already in use: choose another with --port; --port 0 picks a free one"
    ]

    proc, lines, url = _start_relay("--config", str(config), "--region", "from-flag")
    try:
        assert lines[1] == f"auth:     registry, through {dead}"
        assert lines[-1].endswith("region: from-flag")  # the flag wins over the file

        def degraded() -> list[str]:
            health = httpx.get(f"{url}/v1/health", timeout=5).json()
            reasons: list[str] = health["reasons"]
            return reasons if health["status"] == "degraded" and len(reasons) >= 2 else []

        reasons = wait_until(degraded, 60, "degraded health", ignore=(httpx.HTTPError,))
        assert {"registry_unreachable", "evidence_log_unreachable"} <= set(reasons)
    finally:
        if proc.poll() is None:
            _stop(proc)


@pytest.mark.parametrize(
    ("content", "expected"),
    [('prot = 1\n', "prot"), ('port = "x"\n', "port"), ("port = [\n", "not valid TOML")],
    ids=["unknown-key", "bad-value", "not-toml"],
)
def test_relay_config_errors_are_one_line(tmp_path: Path, content: str, expected: str) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(content)
    out = run_zkid("relay", "--config", str(config), "--data-dir", str(tmp_path / "relay"), timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error:") and expected in lines[0], out.stderr


def test_relay_config_file_sets_the_evidence_batching(tmp_path: Path) -> None:
    """The evidence batching and time resolution (docs/privacy.md) have no flag: a config
    file sets them, and a value out of range is refused."""
    from registry.relay.config import load_relay_config, relay_settings

    path = tmp_path / "relay.toml"
    path.write_text("evidence_batch_min = 3\nevidence_batch_max_wait = 2.5\nevidence_time_resolution = 60\n")
    values, extra = relay_config_values(tmp_path, path)
    settings = relay_settings(values, extra, {})
    assert (settings.evidence_batch_min, settings.evidence_batch_max_wait, settings.evidence_time_resolution) == (3, 2.5, 60)
    path.write_text("evidence_batch_min = 0\n")
    with pytest.raises(ValueError, match="evidence_batch_min"):
        load_relay_config(path)
