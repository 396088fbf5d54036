"""The registry's client commands (``zkid register|status|authorize|group create``) as real
subprocesses against a real registry on loopback, and the service commands' refusals."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from registry.ledger.anvil import free_port
from tests.support.registry import OPERATOR_TOKEN, Registry
from tests.support.cli import CLIENT_ENV, PASSPHRASE, zkid_client
from zk.identity import Identity
from zk.identity_file import encrypt_identity

ENV = CLIENT_ENV
zkid = zkid_client


def _identity_file(tmp_path: Path, name: str) -> tuple[Identity, Path]:
    who = Identity(name)
    path = tmp_path / f"{name}.id"
    path.write_bytes(encrypt_identity(who, PASSPHRASE, scrypt_n=2**14))
    return who, path


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("zkid: error:"), out.stderr
    return lines[-1]


def test_register_wait_status_and_duplicate(registry: Registry, tmp_path: Path) -> None:
    who, path = _identity_file(tmp_path, "cli-member")
    out = zkid("register", "--url", registry.url, "--identity", str(path), "--wait", "--timeout", "60", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["commitment"] == str(who.commitment) and status["status"] in ("included", "final")
    assert registry.contract.has_member(0, who.commitment)

    shown = zkid("status", "--url", registry.url, str(who.commitment))
    assert shown.returncode == 0 and "status " in shown.stdout
    dup = zkid("register", "--url", registry.url, str(who.commitment))
    assert dup.returncode == 1 and "duplicate" in _one_error_line(dup)
    # `register --wait` again follows the registration accepted earlier, sends nothing new.
    again = zkid("register", "--url", registry.url, str(who.commitment), "--wait", "--timeout", "60", "--json")
    assert again.returncode == 0, again.stderr
    assert "already registered: waiting for that registration" in again.stderr
    assert json.loads(again.stdout)["commitment"] == str(who.commitment)
    unknown = zkid("status", "--url", registry.url, str(Identity("cli-nobody").commitment))
    assert unknown.returncode == 1 and "not_member" in _one_error_line(unknown)


def test_authorize_then_replay_is_refused(registry: Registry, tmp_path: Path) -> None:
    who, path = _identity_file(tmp_path, "cli-sender")
    assert zkid("register", "--url", registry.url, "--identity", str(path), "--wait", "--timeout", "60").returncode == 0
    registry.wait_root(0, registry.contract.root(0))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300))
    first = zkid("authorize", "--url", registry.url, "--identity", str(path), "--blob", str(blob), "--slot", "4")
    assert first.returncode == 0, first.stderr + first.stdout
    assert first.stdout.startswith("authorized")
    again = zkid("authorize", "--url", registry.url, "--identity", str(path), "--blob", str(blob), "--slot", "4", "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout) == {**json.loads(again.stdout), "authorized": False, "reason": "nullifier_reused"}
    limit = httpx.get(f"{registry.url}/v1/groups/0").json()["message_limit"]
    over = zkid("authorize", "--url", registry.url, "--identity", str(path), "--blob", str(blob), "--slot", str(limit))
    assert over.returncode == 2 and "message limit" in _one_error_line(over)


def test_group_create_uses_the_operator_token(registry: Registry) -> None:
    missing = zkid("group", "create", "--url", registry.url)
    assert missing.returncode == 2 and "ZKID_OPERATOR_TOKEN" in _one_error_line(missing)
    wrong = zkid("group", "create", "--url", registry.url, env={**ENV, "ZKID_OPERATOR_TOKEN": "x" * 20})
    assert wrong.returncode == 2 and "forbidden" in _one_error_line(wrong)
    ok = zkid("group", "create", "--url", registry.url, "--root-window", "60", "--json", env={**ENV, "ZKID_OPERATOR_TOKEN": OPERATOR_TOKEN})
    assert ok.returncode == 0, ok.stderr
    created = json.loads(ok.stdout)
    assert created["root_window"] == 60
    assert httpx.get(f"{registry.url}/v1/groups/{created['group_id']}").status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["register", "007"],
        ["register", "0"],
        ["register"],
        ["status", "12x"],
    ],
)
def test_client_input_errors(args: list[str]) -> None:
    out = zkid(*args[:1], "--url", "http://127.0.0.1:9", *args[1:])
    assert out.returncode == 2
    _one_error_line(out)


def test_unreachable_registry() -> None:
    out = zkid("status", "--url", f"http://127.0.0.1:{free_port()}", "12345")
    assert out.returncode == 2 and "cannot reach" in _one_error_line(out)
    assert "is it running? (`zkid up` prints its URL; --url or $ZKID_URL names another)" in out.stderr
    bad = zkid("status", "--url", "ftp://x", "12345")
    assert bad.returncode == 2


def test_service_commands_refuse_bad_setups(tmp_path: Path) -> None:
    out = zkid("serve", "--rpc-url", "http://127.0.0.1:9", "--manifest", str(tmp_path / "missing.json"), "--data-dir", str(tmp_path))
    assert out.returncode == 2 and "not found" in _one_error_line(out)
    idle = zkid("reindex", "--data-dir", str(tmp_path))
    assert idle.returncode == 2 and "not running" in _one_error_line(idle)
    short = zkid("up", "--data-dir", str(tmp_path), env={**ENV, "ZKID_OPERATOR_TOKEN": "short"})
    assert short.returncode == 2 and "too short" in _one_error_line(short)
    bad_port = zkid("up", "--data-dir", str(tmp_path), "--port", "70000")
    assert bad_port.returncode == 2


def test_relay_keys_must_be_addresses(tmp_path: Path) -> None:
    flag = zkid("up", "--data-dir", str(tmp_path), "--relay-key", "0x1234")
    assert flag.returncode == 2 and "--relay-key" in _one_error_line(flag)
    env = zkid("up", "--data-dir", str(tmp_path), env={**ENV, "ZKID_RELAY_KEYS": "0x" + "Ab" * 20})
    assert env.returncode == 2 and "relay_keys" in _one_error_line(env)


def test_clock_skew_of_half_an_epoch_is_refused_at_start(tmp_path: Path) -> None:
    """skew >= epoch_length / 2 would accept three epochs at once (docs/authorization.md):
    the registry does not start, and says so in one line, from the environment or a file."""
    manifest = tmp_path / "deployment.json"
    manifest.write_text("{}")
    serve = ["serve", "--rpc-url", "http://127.0.0.1:9", "--manifest", str(manifest), "--data-dir", str(tmp_path / "d")]
    out = zkid(*serve, env={**ENV, "ZKID_EPOCH_LENGTH": "600", "ZKID_CLOCK_SKEW": "300"})
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "clock_skew (300 s) must be less than epoch_length / 2" in _one_error_line(out)
    config = tmp_path / "zkid.toml"
    config.write_text("epoch_length = 60\nclock_skew = 45\n")
    out = zkid(*serve, "--config", str(config))
    assert out.returncode == 2 and "clock_skew (45 s)" in _one_error_line(out)
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_config_file_errors_name_the_file_and_the_setting(tmp_path: Path) -> None:
    """A bad ``--config`` file or ``ZKID_*`` value is one line saying where the bad value
    came from (the file, the variable) and which key, in words rather than pydantic's."""
    data = ["--data-dir", str(tmp_path / "d")]
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("bogus = 1\n")
    out = zkid("up", *data, "--config", str(unknown))
    assert out.returncode == 2 and out.stdout == ""
    assert _one_error_line(out) == f"zkid: error: {unknown}: unknown setting bogus (the settings are listed in docs/settings.md)"
    typed = tmp_path / "typed.toml"
    typed.write_text('confirmations = "x"\n')
    out = zkid("up", *data, "--config", str(typed))
    assert out.returncode == 2 and f"invalid setting confirmations ($ZKID_CONFIRMATIONS or {typed}):" in _one_error_line(out)
    out = zkid("up", *data, env={**ENV, "ZKID_CONFIRMATIONS": "x"})
    assert out.returncode == 2 and "invalid setting confirmations ($ZKID_CONFIRMATIONS):" in _one_error_line(out)
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    out = zkid("up", *data, "--config", str(broken))
    assert out.returncode == 2 and f"zkid: error: {broken} is not valid TOML: " in _one_error_line(out)
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # refused before anything was created
