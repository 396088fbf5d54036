"""Errors that say what to do: each as a real ``zkid`` subprocess, its
exit code, stdout and stderr checked; against a real registry and relay on loopback where
the error comes from one."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.storage.dir_lock import DataDirLock
from tests.registry.relay.support import running_relay
from tests.support.cli import CLIENT_ENV, PASSPHRASE, zkid_client
from tests.support.registry import Registry
from zk.identity import Identity
from zk.identity_file import encrypt_identity

ENV = CLIENT_ENV
zkid = zkid_client


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("zkid: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], out.stderr  # (progress lines may come before it)
    assert "Traceback" not in out.stderr
    return errors[0]


def _identity_file(tmp_path: Path, name: str) -> tuple[Identity, Path]:
    who = Identity(name)
    path = tmp_path / f"{name}.id"
    path.write_bytes(encrypt_identity(who, PASSPHRASE, scrypt_n=2**14))
    return who, path


@pytest.fixture(scope="module")
def relay_url(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_relay(tmp_path_factory.mktemp("relay"), registry.anvil.rpc_url, registry.manifest, send_groups=(0,)) as (url, _, _):
        yield url


def test_an_empty_passphrase_is_one_line(tmp_path: Path) -> None:
    out = zkid("identity", "create", "--out", str(tmp_path / "x.id"), env={**ENV, "ZKID_PASSPHRASE": ""})
    assert out.returncode == 2
    assert "ZKID_PASSPHRASE is empty" in _one_error_line(out)
    assert not (tmp_path / "x.id").exists()


def test_identity_create_without_out_warns_that_nothing_is_saved(tmp_path: Path) -> None:
    out = zkid("identity", "create")
    assert out.returncode == 0 and out.stdout.startswith("commitment: ")
    assert "not saved" in out.stderr and "--out" in out.stderr
    saved = zkid("identity", "create", "--out", str(tmp_path / "kept.id"))
    assert saved.returncode == 0 and saved.stderr == ""


def test_duplicate_names_the_commitment(registry: Registry) -> None:
    value = Identity("cli-errors-duplicate").commitment
    first = zkid("register", "--url", registry.url, str(value))
    assert first.returncode == 0, first.stderr
    again = zkid("register", "--url", registry.url, str(value))
    assert again.returncode == 1
    line = _one_error_line(again)
    assert "duplicate" in line and str(value) in line and "commitment 0 " not in line
    assert f"zkid status --group 0 {value}" in line  # how to follow the earlier registration
    # In one request: the repeated commitment is named, not its position.
    other = Identity("cli-errors-repeated").commitment
    answer = httpx.post(f"{registry.url}/v1/groups/0/members", json={"commitments": [str(Identity("x1").commitment), str(other), str(other)]})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "duplicate" and str(other) in answer.json()["error"]["message"]


def test_nullifier_reused_on_authorize_suggests_the_next_free_slot(registry: Registry, tmp_path: Path) -> None:
    _, path = _identity_file(tmp_path, "cli-errors-sender")
    assert zkid("register", "--url", registry.url, "--identity", str(path), "--wait", "--timeout", "60").returncode == 0
    registry.wait_root(0, registry.contract.root(0))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"ciphertext")
    first = zkid("authorize", "--url", registry.url, "--identity", str(path), "--blob", str(blob))
    assert first.returncode == 0, first.stderr
    assert "slot 0)" in first.stdout  # the lowest slot of a fresh slots file
    again = zkid("authorize", "--url", registry.url, "--identity", str(path), "--blob", str(blob), "--slot", "0")
    assert again.returncode == 1
    assert again.stdout.startswith("refused: nullifier_reused") and "the next free slot is 1: --slot 1" in again.stdout
    as_json = zkid("authorize", "--url", registry.url, "--identity", str(path), "--blob", str(blob), "--slot", "0", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["next_slot"] == 1
    # Without --slot the command takes that free slot itself.
    picked = zkid("authorize", "--url", registry.url, "--identity", str(path), "--blob", str(blob))
    assert picked.returncode == 0 and "slot 1)" in picked.stdout


def test_a_url_that_is_not_a_registry_is_recognised(registry: Registry, relay_url: str) -> None:
    relay = zkid("status", "--url", relay_url, "12345")
    assert relay.returncode == 2
    line = _one_error_line(relay)
    assert "is a relay" in line and "--url" in line
    with_path = zkid("status", "--url", f"{registry.url}/v1", "12345")
    assert with_path.returncode == 2
    assert f"try {registry.url}" in _one_error_line(with_path)
    deeper = zkid("register", "--url", f"{registry.url}/v1/groups/0/members", "12345")
    assert deeper.returncode == 2 and "without the /v1 API path" in _one_error_line(deeper)


def test_errors_come_out_as_json_under_json(registry: Registry) -> None:
    unknown = zkid("status", "--url", registry.url, str(Identity("cli-errors-nobody").commitment), "--json")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["error"]["code"] == "not_member"
    _one_error_line(unknown)
    bad = zkid("status", "--url", registry.url, "12x", "--json")
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"]["code"] == "invalid_input"


def test_register_wait_timeout_says_the_registration_is_pending(registry: Registry) -> None:
    value = Identity("cli-errors-pending").commitment
    out = zkid("register", "--url", registry.url, str(value), "--wait", "--timeout", "0", "--json")
    assert out.returncode == 1
    line = _one_error_line(out)
    assert "accepted and is still pending" in line and f"zkid status --group 0 {value}" in line
    # The progress line says why it waits (the batch floor), not only that it does.
    assert "waiting for included: status pending (registrations go on chain in batches" in out.stderr
    data = json.loads(out.stdout)
    assert data["commitment"] == str(value) and data["error"]["code"] == "still_pending"


def test_a_second_registry_on_a_data_dir_in_use_is_one_line(registry: Registry) -> None:
    # The module's registry runs in this test process and holds its data directory.
    data = registry.settings.data_dir
    out = zkid(
        "serve", "--data-dir", str(data), "--manifest", str(data / "deployment.json"),
        "--rpc-url", registry.anvil.rpc_url, "--port", "0",
    )
    assert out.returncode == 2, out.stderr
    line = _one_error_line(out)
    assert f"is in use by process {os.getpid()}" in line and "--data-dir" in line
    with registry.client() as c:  # the running registry is untouched
        assert c.get("/v1/health").status_code == 200
    # `zkid migrate` is refused before it opens a store; `--check` only reads: neither
    # checkpoints the running registry's write-ahead logs.
    wals = {p.name: p.stat().st_size for p in data.glob("*.sqlite-wal") if not p.name.startswith("index")}
    refused = zkid("migrate", "--data-dir", str(data))
    assert refused.returncode == 2 and "is in use by process" in _one_error_line(refused)
    checked = zkid("migrate", "--data-dir", str(data), "--check")
    assert checked.returncode == 0 and "up to date" in checked.stdout, checked.stderr
    assert {p.name: p.stat().st_size for p in data.glob("*.sqlite-wal") if not p.name.startswith("index")} == wals


def test_a_second_relay_on_a_data_dir_in_use_is_one_line(registry: Registry, tmp_path: Path) -> None:
    data = tmp_path / "relay"
    with running_relay(data, registry.anvil.rpc_url, registry.manifest, send_groups=(0,)) as (url, _, _):
        out = zkid("relay", "--data-dir", str(data), "--rpc-url", registry.anvil.rpc_url, "--send-group", "0", "--port", "0")
        assert out.returncode == 2, out.stderr
        line = _one_error_line(out)
        assert "cannot start the relay" in line and f"is in use by process {os.getpid()}" in line
        assert httpx.get(f"{url}/v1/health", timeout=10).status_code == 200
    DataDirLock(data, "relay").release()  # the stopped relay let the directory go
