"""``zkid send --trust-list FILE --home REGION`` (registry/cli/messaging_commands.py): the
sender's registry comes from the trust list (docs/regions.md), and it must answer for the
chain and contract the list names. Real processes: a registry (Anvil, service, HTTP) and
a relay on loopback; the error cases in-process through Typer's runner."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.cli import app
from registry.client.messaging import parse_mailbox, pickup as pickup_mailbox, read_pickup_secret
from registry.relay.trust_list import TrustedRegistry, render_trust_list
from tests.registry.relay.support import running_relay
from tests.support.cli import invoke, run_zkid
from tests.support.registry import Registry, anchored_member
from zk.identity_file import encrypt_identity
from zk.relay_scope import RegistryRef

PASSPHRASE = "correct horse battery staple"
ENV = {k: v for k, v in os.environ.items() if k not in ("ZKID_URL", "ZKID_TRUST_LIST", "ZKID_OPERATOR_TOKEN")}
ENV["ZKID_PASSPHRASE"] = PASSPHRASE
MAILBOX = "cd" * 32


def _mailbox(tmp_path: Path) -> str:
    return hashlib.sha256(str(tmp_path).encode()).hexdigest()


def _entry(region: str, ref: RegistryRef, url: str, rpc_url: str) -> TrustedRegistry:
    return TrustedRegistry(region=region, ref=ref, registry_url=url, rpc_url=rpc_url, send_groups=(0,))


@pytest.fixture(scope="module")
def world(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str, Path, Path]]:
    """The registry with the sender anchored in group 0, a relay checking sends on its
    ledger, the sender's identity file and a trust list naming the registry as
    ``eu-central`` and, as ``gcc``, the same URL under another chain id (a list that is
    wrong about which registry answers there)."""
    base = tmp_path_factory.mktemp("send-trust-list")
    sender, _ = anchored_member(registry, "cli-trust-list-sender")
    identity = base / "sender.id"
    identity.write_bytes(encrypt_identity(sender, PASSPHRASE, scrypt_n=2**14))
    rpc = registry.anvil.rpc_url
    trust = base / "trust.toml"
    wrong = RegistryRef(registry.deployment.chain_id + 1, registry.deployment.contract)
    trust.write_text(render_trust_list([_entry("eu-central", registry.deployment, registry.url, rpc), _entry("gcc", wrong, registry.url, rpc)]))
    with running_relay(base / "relay", rpc, registry.manifest, send_groups=(0,)) as (relay_url, _relay, _app):
        yield registry, relay_url, identity, trust


def _send(relay: str, identity: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``zkid send`` to the test's mailbox (one per test directory: the relay is shared)."""
    blob = tmp_path / "msg.bin"
    blob.write_bytes(os.urandom(300))
    return run_zkid(
        "send", "--relay", relay, "--identity", str(identity), "--blob", str(blob), "--mailbox", _mailbox(tmp_path),
        "--pickup-secret", str(tmp_path / "bob.secret"), "--json", *extra, env=env or ENV,
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("pickup secret:")]
    assert len(lines) == 1 and lines[0].startswith("zkid: error: "), stderr
    return lines[0]


def test_send_with_the_home_region_of_a_trust_list(world: tuple[Registry, str, Path, Path], tmp_path: Path) -> None:
    _registry, relay, identity, trust = world
    out = _send(relay, identity, tmp_path, "--trust-list", str(trust), "--home", "eu-central")
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)
    assert sent["accepted"] and sent["group_id"] == 0
    # $ZKID_TRUST_LIST instead of the option.
    again = _send(relay, identity, tmp_path, "--home", "eu-central", env={**ENV, "ZKID_TRUST_LIST": str(trust)})
    assert again.returncode == 0, again.stderr
    picked = pickup_mailbox(relay, parse_mailbox(_mailbox(tmp_path)), read_pickup_secret(tmp_path / "bob.secret"))
    assert sorted(b.id for b in picked) == sorted([sent["id"], json.loads(again.stdout)["id"]])


def test_a_registry_answering_for_another_chain_is_refused_before_any_proof(
    world: tuple[Registry, str, Path, Path], tmp_path: Path
) -> None:
    _registry, relay, identity, trust = world
    out = _send(relay, identity, tmp_path, "--trust-list", str(trust), "--home", "gcc")
    assert out.returncode == 2, out.stderr
    line = _one_error_line(out.stderr)
    assert "is not the trust list's" in line and "another registry" in line
    assert json.loads(out.stdout)["error"]["code"] == "wrong_registry"


def test_one_entry_needs_no_home(world: tuple[Registry, str, Path, Path], tmp_path: Path) -> None:
    registry, relay, identity, _trust = world
    single = tmp_path / "single.toml"
    single.write_text(render_trust_list([_entry("eu-central", registry.deployment, registry.url, registry.anvil.rpc_url)]))
    out = _send(relay, identity, tmp_path, "--trust-list", str(single))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--trust-list", "TRUST", "--registry", "http://127.0.0.1:9"], {}, "--registry and --trust-list"),
        (["--trust-list", "TRUST"], {}, "--home REGION is needed: the trust list TRUST names regions eu-central, gcc"),
        (["--trust-list", "TRUST", "--home", "us"], {}, "--home us: no such region in the trust list TRUST (regions: eu-central, gcc)"),
        (["--home", "eu-central"], {}, "--home needs --trust-list FILE"),
        (["--trust-list", "MISSING"], {}, "--trust-list: cannot read"),
        (["--home", "nowhere"], {"ZKID_TRUST_LIST": "TRUST"}, "no such region"),
    ],
)
def test_unusable_trust_list_options_are_one_line(
    world: tuple[Registry, str, Path, Path], tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    _registry, relay, identity, trust = world
    blob = tmp_path / "msg.bin"
    blob.write_bytes(b"x")

    def fill(value: str) -> str:
        return value.replace("TRUST", str(trust)).replace("MISSING", str(tmp_path / "missing.toml"))

    result = invoke(
        app,
        ["send", "--relay", relay, "--identity", str(identity), "--blob", str(blob), "--mailbox", MAILBOX,
         "--pickup-secret", str(tmp_path / "s"), *map(fill, args)],
        env={**ENV, **{k: fill(v) for k, v in env.items()}},
    )
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.stderr)
    assert fill(says) in line
    assert not (tmp_path / "s").exists()  # refused before anything was created
