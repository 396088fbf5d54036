"""``zkid send`` and ``zkid pickup`` across regions, as a user runs them: real
``zkid`` processes against two regional registries (two Anvils, chain ids 31337 and
31338) and two federated relays (``us-east``, ``eu-west``) whose trust list names both.

A sender registered in ``gcc`` sends through the ``us-east`` relay (a region with no
registry), the sender's registry taken from the trust list with ``--home gcc``; the
recipient, of ``eu-central``, picks the blob up there: delivered exactly once, and
nothing for that mailbox at ``eu-west``. The same slot sent again through ``eu-west``
(another copy of the sender's identity) is refused, ``nullifier_reused``: the first
relay claimed the nullifier at the sender's home registry, which both relays ask. A
third relay (``ap-southeast``) trusting ``eu-central`` only refuses the ``gcc`` sender
with ``unknown_registry``, and ``zkid send`` says what to do."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.relay.app import RelaySettings, create_relay_app
from registry.relay.evidence import KEY_FILE
from registry.relay.trust_list import TrustedRegistry, TrustList, render_trust_list
from tests.support.cli import run_zkid
from tests.support.net import serve_app
from tests.support.registry import Registry, anchored_member, running_registry
from zk.evidence.record import RecordSigner
from zk.identity_file import encrypt_identity

PASSPHRASE = "correct horse battery staple"
ENV = {k: v for k, v in os.environ.items() if k not in ("ZKID_URL", "ZKID_TRUST_LIST", "ZKID_OPERATOR_TOKEN")}
ENV["ZKID_PASSPHRASE"] = PASSPHRASE
RELAY_KEYS = {"us-east": b"\x31" * 32, "eu-west": b"\x32" * 32, "ap-southeast": b"\x33" * 32}
EPOCH = 600  # the registries' epoch_length (the default)


def _entry(region: str, reg: Registry) -> TrustedRegistry:
    return TrustedRegistry(
        region=region, ref=reg.deployment, registry_url=reg.url, rpc_url=reg.settings.rpc_url,
        send_groups=(0,), operator=reg.manifest.deployer,
    )


@contextlib.contextmanager
def _relay(data: Path, region: str, trust: TrustList) -> Iterator[str]:
    data.mkdir(parents=True)
    (data / KEY_FILE).write_text(RELAY_KEYS[region].hex() + "\n")
    settings = RelaySettings(data_dir=data, region=region, trust_list=trust, evidence_batch_max_wait=0.0)
    with serve_app(create_relay_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path, Path]]:
    """The relays' URLs by region, the trust list file and the gcc sender's identity file."""
    base = tmp_path_factory.mktemp("send-regions")
    keys = [RecordSigner(k).address for k in RELAY_KEYS.values()]
    with contextlib.ExitStack() as stack:
        eu = stack.enter_context(running_registry(base / "eu-central", ["--chain-id", "31337"], region="eu-central", relay_keys=keys))
        gcc = stack.enter_context(running_registry(base / "gcc", ["--chain-id", "31338"], region="gcc", relay_keys=keys))
        sender, _ = anchored_member(gcc, "cli-regions-sender-of-gcc")
        identity = base / "sender.id"
        identity.write_bytes(encrypt_identity(sender, PASSPHRASE, scrypt_n=2**14))
        entries = [_entry("eu-central", eu), _entry("gcc", gcc)]
        trust_file = base / "trust.toml"
        trust_file.write_text(render_trust_list(entries))
        relays = {region: stack.enter_context(_relay(base / region, region, TrustList(entries))) for region in ("us-east", "eu-west")}
        # ap-southeast trusts eu-central only.
        relays["ap-southeast"] = stack.enter_context(_relay(base / "ap-southeast", "ap-southeast", TrustList(entries[:1])))
        yield relays, trust_file, identity


def _zkid(*args: str) -> subprocess.CompletedProcess[str]:
    return run_zkid(*args, env=ENV)


def _send_hello(
    world: tuple[dict[str, str], Path, Path], tmp_path: Path, relay: str, home: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``zkid send`` of a short blob with the world's identity, named as a member of
    ``home``, through the relay of region ``relay``, to a new mailbox."""
    relays, trust, identity = world
    blob = tmp_path / "msg.bin"
    blob.write_bytes(b"hello")
    return _zkid(
        "send", "--relay", relays[relay], "--trust-list", str(trust), "--home", home, "--identity", str(identity),
        "--blob", str(blob), "--mailbox", secrets.token_hex(32), "--pickup-secret", str(tmp_path / "s"), *extra,
    )


def _refused(out: subprocess.CompletedProcess[str], code: str) -> None:
    """A ``zkid send --json`` that exited 1 with the error ``code``."""
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)["error"]["code"] == code


def test_send_through_another_regions_relay_and_pick_up_exactly_once(
    world: tuple[dict[str, str], Path, Path], tmp_path: Path
) -> None:
    relays, trust, identity = world
    if time.time() % EPOCH > EPOCH - 60:  # the two sends of one slot must fall in one epoch
        time.sleep(EPOCH - time.time() % EPOCH + 1)
    mailbox, secret = secrets.token_hex(32), tmp_path / "recipient.secret"
    blob = tmp_path / "msg.bin"
    blob.write_bytes(os.urandom(900))
    common = ["--trust-list", str(trust), "--home", "gcc", "--identity", str(identity), "--blob", str(blob), "--json"]
    sent = _zkid("send", "--relay", relays["us-east"], "--mailbox", mailbox, "--pickup-secret", str(secret), "--slot", "0", *common)
    assert sent.returncode == 0, sent.stderr
    accepted = json.loads(sent.stdout)
    assert accepted["accepted"] and accepted["slot"] == 0

    # Another copy of the identity (its own slots file) sends slot 0 again through eu-west:
    # the nullifier was claimed at gcc, the home registry both relays ask.
    replay = _zkid(
        "send", "--relay", relays["eu-west"], "--mailbox", secrets.token_hex(32), "--pickup-secret", str(tmp_path / "other.secret"),
        "--slot", "0", "--slots", str(tmp_path / "other.slots"), *common,
    )
    _refused(replay, "nullifier_reused")

    # The recipient picks up at us-east: the one blob, then nothing; eu-west never had it.
    inbox = tmp_path / "inbox"
    got = _zkid("pickup", "--relay", relays["us-east"], "--mailbox", mailbox, "--pickup-secret", str(secret), "--out", str(inbox), "--ack", "--json")
    assert got.returncode == 0, got.stderr
    picked = json.loads(got.stdout)["blobs"]
    assert [b["id"] for b in picked] == [accepted["id"]] and picked[0]["acknowledged"]
    assert Path(picked[0]["path"]).read_bytes() == blob.read_bytes()
    for region in ("us-east", "eu-west"):
        again = _zkid("pickup", "--relay", relays[region], "--mailbox", mailbox, "--pickup-secret", str(secret), "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["blobs"] == []


def test_a_sender_named_under_the_wrong_home_is_not_a_member_there(
    world: tuple[dict[str, str], Path, Path], tmp_path: Path
) -> None:
    _refused(_send_hello(world, tmp_path, "eu-west", "eu-central", "--json"), "not_member")
    # Without --json the one line names the region and asks about --home.
    text = _send_hello(world, tmp_path, "eu-west", "eu-central")
    assert text.returncode == 1
    line = text.stderr.strip().splitlines()[-1]
    assert "region eu-central's registry" in line and "not_member" in line and "is --home eu-central the region" in line


def test_a_relay_that_does_not_trust_the_senders_registry_says_so(
    world: tuple[dict[str, str], Path, Path], tmp_path: Path
) -> None:
    out = _send_hello(world, tmp_path, "ap-southeast", "gcc", "--json")
    _refused(out, "unknown_registry")
    assert "use a relay whose trust list names it" in out.stderr
