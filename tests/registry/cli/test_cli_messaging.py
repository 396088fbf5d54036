"""``zkid send`` and ``zkid pickup`` (registry/cli/messaging_commands.py) as real subprocesses,
against a real registry (Anvil, service, HTTP) and a real relay on loopback, in a group
of many members registered in one batch; and ``zkid proof generate --merkle-proof``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.client.api import RegistryClient, SendSlots
from registry.client.messaging import parse_mailbox, pickup as pickup_mailbox, read_pickup_secret
from tests.registry.conftest import make_commitments
from tests.registry.relay.support import running_relay
from tests.support.cli import run_zkid
from tests.support.registry import OPERATOR_TOKEN, Registry
from zk.identity import Identity
from zk.identity_file import encrypt_identity
from zk.proof import SemaphoreProof, verify_proof

PASSPHRASE = "correct horse battery staple"
ENV = {**os.environ, "ZKID_PASSPHRASE": PASSPHRASE}
ENV.pop("ZKID_URL", None)
ENV.pop("ZKID_OPERATOR_TOKEN", None)
MAILBOX = "ab" * 32
GROUP_SIZE = 64


def zkid(*args: str) -> subprocess.CompletedProcess[str]:
    return run_zkid(*args, env=ENV)


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("zkid: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], out.stderr  # (after a notice like "pickup secret: created")
    assert "Traceback" not in out.stderr
    return errors[0]


@pytest.fixture(scope="module")
def world(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str, Path, Identity]]:
    """The registry with a group 0 of GROUP_SIZE members (one batch, the sender among them),
    a relay checking sends on the ledger, and the sender's identity file."""
    base = tmp_path_factory.mktemp("messaging")
    sender = Identity("cli-messaging-sender")
    identity_file = base / "sender.id"
    identity_file.write_bytes(encrypt_identity(sender, PASSPHRASE, scrypt_n=2**14))
    members = make_commitments(GROUP_SIZE - 1, seed=77)
    members.insert(GROUP_SIZE // 2, sender.commitment)
    with registry.client() as http:
        answer = http.post(
            "/v1/groups/0/members", json={"commitments": [str(c) for c in members]},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert answer.status_code == 202, answer.text
    registry.wait_included(0, [sender.commitment, members[0], members[-1]])
    registry.wait_root(0, registry.contract.root(0))
    assert httpx.get(f"{registry.url}/v1/groups/0").json()["size"] == GROUP_SIZE
    with running_relay(base / "relay", registry.anvil.rpc_url, registry.manifest, send_groups=(0,)) as (relay_url, _relay, _app):
        yield registry, relay_url, identity_file, sender


def test_send_pickup_ack_in_a_big_group(world: tuple[Registry, str, Path, Identity], tmp_path: Path) -> None:
    registry, relay, identity, _sender = world
    secret_file = tmp_path / "bob.secret"
    blobs = [os.urandom(700), os.urandom(1500)]
    sent = []
    for i, content in enumerate(blobs):
        path = tmp_path / f"msg{i}.bin"
        path.write_bytes(content)
        out = zkid(
            "send", "--relay", relay, "--registry", registry.url, "--identity", str(identity), "--blob", str(path),
            "--mailbox", MAILBOX, "--pickup-secret", str(secret_file), "--json",
        )
        assert out.returncode == 0, out.stderr
        sent.append(json.loads(out.stdout))
        # The secret is created once, owner-only, and says so on stderr.
        assert ("pickup secret: created" in out.stderr) == (i == 0)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(read_pickup_secret(secret_file)) == 32
    assert all(s["accepted"] and len(s["id"]) == 32 and s["evidence_id"] is None for s in sent)
    # Without --slot each send takes a slot the slots file has not used.
    assert sent[0]["slot"] != sent[1]["slot"] or sent[0]["epoch"] != sent[1]["epoch"]
    assert (tmp_path / "..").exists() and identity.with_name(identity.name + ".slots").exists()

    listed = zkid("pickup", "--relay", relay, "--mailbox", MAILBOX, "--pickup-secret", str(secret_file))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip().splitlines()[-1].startswith("2 blob(s)")

    inbox = tmp_path / "inbox"
    got = zkid("pickup", "--relay", relay, "--mailbox", MAILBOX, "--pickup-secret", str(secret_file), "--out", str(inbox), "--ack", "--json")
    assert got.returncode == 0, got.stderr
    picked = json.loads(got.stdout)["blobs"]
    assert sorted(b["id"] for b in picked) == sorted(s["id"] for s in sent)
    assert all(b["acknowledged"] for b in picked)
    by_id = {s["id"]: content for s, content in zip(sent, blobs)}
    for b in picked:
        assert Path(b["path"]).read_bytes() == by_id[b["id"]]
    # Acknowledged: erased on the relay.
    assert pickup_mailbox(relay, parse_mailbox(MAILBOX), read_pickup_secret(secret_file)) == []


def test_text_output_names_the_blob_and_evidence_ids(world: tuple[Registry, str, Path, Identity], tmp_path: Path) -> None:
    registry, relay, identity, _ = world
    blob = tmp_path / "m.bin"
    blob.write_bytes(b"ciphertext for the text output")
    out = zkid(
        "send", "--relay", relay, "--registry", registry.url, "--identity", str(identity), "--blob", str(blob),
        "--mailbox", "cd" * 32, "--pickup-secret", str(tmp_path / "s"), "--ask-proof",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("accepted: blob id ") and len(lines[0].split()[-1]) == 32
    assert lines[1].startswith("evidence id: ")


def test_a_refused_send_exits_1_with_the_reason(world: tuple[Registry, str, Path, Identity], tmp_path: Path) -> None:
    registry, relay, identity, _ = world
    blob = tmp_path / "m.bin"
    blob.write_bytes(b"refused blob")
    common = ["send", "--relay", relay, "--registry", registry.url, "--identity", str(identity), "--blob", str(blob)]
    slots = ["--slots", str(tmp_path / "own.slots")]
    first = zkid(*common, "--mailbox", "11" * 32, "--pickup-secret", str(tmp_path / "a"), "--slot", "7", *slots, "--json")
    assert first.returncode == 0, first.stderr
    epoch = json.loads(first.stdout)["epoch"]
    # The same slot again (a fresh slots file cannot protect it): the relay has its nullifier.
    again = zkid(*common, "--mailbox", "12" * 32, "--pickup-secret", str(tmp_path / "a"), "--slot", "7", "--slots", str(tmp_path / "other.slots"))
    assert again.returncode == 1
    line = _one_error_line(again)
    assert "nullifier_reused" in line and "leave out --slot" in line
    # A mailbox tag held by another pickup secret.
    (tmp_path / "b").write_text("cd" * 32 + "\n")
    taken = zkid(*common, "--mailbox", "11" * 32, "--pickup-secret", str(tmp_path / "b"), *slots, "--json")
    assert taken.returncode == 1
    assert "mailbox_conflict" in _one_error_line(taken)
    assert json.loads(taken.stdout)["error"]["code"] == "mailbox_conflict"
    # Without --slot, a slot this identity used elsewhere (here: slot 7, sent above with
    # another slots file) is skipped: it costs a proof, not the send.
    lost_file = tmp_path / "lost.slots"
    lost_slots = SendSlots(lost_file)
    for used in range(7):
        lost_slots.take(0, epoch, used)
    lost_slots.close()
    lost = zkid(*common, "--mailbox", "13" * 32, "--pickup-secret", str(tmp_path / "c"), "--slots", str(lost_file), "--json")
    assert lost.returncode == 0, lost.stderr
    result = json.loads(lost.stdout)
    if result["epoch"] == epoch:  # (unless an epoch ended in between: then slot 0 of the next)
        assert (result["slot"], result["attempts"]) == (8, 2)
    # A wrong pickup secret is refused at pickup.
    wrong = zkid("pickup", "--relay", relay, "--mailbox", "11" * 32, "--pickup-secret", str(tmp_path / "b"))
    assert wrong.returncode == 1 and "forbidden" in _one_error_line(wrong)


def test_a_non_member_is_refused(world: tuple[Registry, str, Path, Identity], tmp_path: Path) -> None:
    registry, relay, _, _ = world
    stranger = tmp_path / "stranger.id"
    stranger.write_bytes(encrypt_identity(Identity("cli-messaging-stranger"), PASSPHRASE, scrypt_n=2**14))
    blob = tmp_path / "m.bin"
    blob.write_bytes(b"x")
    out = zkid(
        "send", "--relay", relay, "--registry", registry.url, "--identity", str(stranger), "--blob", str(blob),
        "--mailbox", MAILBOX, "--pickup-secret", str(tmp_path / "s"),
    )
    assert out.returncode == 1 and "not_member" in _one_error_line(out)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--mailbox": "abc"}, "--mailbox"),
        ({"--blob": "missing.bin"}, "cannot read"),
        ({"--relay": "ftp://relay"}, "--relay must start with http"),
        ({"--registry": "http://127.0.0.1:9/v1/groups"}, "without the /v1 API path"),
        ({"--pickup-secret": "not-a-secret.txt"}, "does not hold a pickup secret"),
        ({"--slot": "100000"}, "message limit"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    world: tuple[Registry, str, Path, Identity], tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    registry, relay, identity, _ = world
    (tmp_path / "m.bin").write_bytes(b"blob")
    (tmp_path / "not-a-secret.txt").write_text("hello\n")
    options = {
        "--relay": relay, "--registry": registry.url, "--identity": str(identity), "--blob": str(tmp_path / "m.bin"),
        "--mailbox": MAILBOX, "--pickup-secret": str(tmp_path / "s"),
    }
    for key, value in change.items():
        options[key] = str(tmp_path / value) if key in ("--blob", "--pickup-secret") else value
    out = zkid("send", *[part for item in options.items() for part in item])
    assert out.returncode == 2, out.stderr
    assert expected in _one_error_line(out)


def test_pickup_refuses_ack_without_out(world: tuple[Registry, str, Path, Identity], tmp_path: Path) -> None:
    _, relay, _, _ = world
    secret = tmp_path / "s"
    secret.write_text("00" * 32 + "\n")
    out = zkid("pickup", "--relay", relay, "--mailbox", MAILBOX, "--pickup-secret", str(secret), "--ack")
    assert out.returncode == 2 and "--ack needs --out" in _one_error_line(out)
    missing = zkid("pickup", "--relay", relay, "--mailbox", MAILBOX, "--pickup-secret", str(tmp_path / "none"))
    assert missing.returncode == 2 and "--pickup-secret" in _one_error_line(missing)


def test_proof_generate_from_the_registrys_merkle_proof(world: tuple[Registry, str, Path, Identity], tmp_path: Path) -> None:
    registry, _, identity, sender = world
    answer = httpx.get(f"{registry.url}/v1/groups/0/proofs/{sender.commitment}")
    assert answer.status_code == 200
    merkle = tmp_path / "merkle.json"
    merkle.write_text(answer.text)
    proof_file = tmp_path / "proof.json"
    out = zkid("proof", "generate", "--identity", str(identity), "--merkle-proof", str(merkle), "--message", "hello", "--scope", "7", "--out", str(proof_file))
    assert out.returncode == 0, out.stderr
    proof = SemaphoreProof.from_json(proof_file.read_text())
    with RegistryClient(registry.url) as client:
        assert str(proof.merkle_tree_root) == client.group(0)["root"]
    assert verify_proof(proof)
    # Someone else's proof, and neither/both sources: one line, exit 2.
    other = httpx.get(f"{registry.url}/v1/groups/0/proofs/{make_commitments(1, seed=77)[0]}")
    merkle.write_text(other.text)
    wrong = zkid("proof", "generate", "--identity", str(identity), "--merkle-proof", str(merkle), "--message", "1", "--scope", "1")
    assert wrong.returncode == 2 and "another commitment" in _one_error_line(wrong)
    neither = zkid("proof", "generate", "--identity", str(identity), "--message", "1", "--scope", "1")
    assert neither.returncode == 2 and "--merkle-proof" in _one_error_line(neither)
