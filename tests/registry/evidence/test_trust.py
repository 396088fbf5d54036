"""``zkid evidence verify`` anchored in the verifier's own trust: a forked log
anchored on a private EvidenceAnchor copy, a self-signed issuer, an acknowledgement from a
group someone else made, and missing trust inputs are all refused. Real parts: a real
Anvil (``-p tests.fixtures.anvil``), the real contracts, a real evidence log in SQLite and
the CLI as a subprocess."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from registry.cli import app as zkid_app
from registry.evidence.log import EvidenceLog
from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.ledger.artifacts import load_artifact
from registry.ledger.deploy import save_manifest
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from tests.registry.evidence.support import CHAIN_ID, RELAY, RELAY_KEY, make_records, open_log
from tests.support.cli import invoke, run_zkid
from zk.evidence import merkle
from zk.evidence.ack import Acknowledgement, prove_acknowledgement, sign_acknowledgement
from zk.evidence.bundle import Anchor, EvidenceBundle, build_bundle
from zk.evidence.note import Checkpoint, sign_checkpoint
from zk.evidence.record import EventType, EvidenceRecord, SignedRecord, sign_record
from zk.identity import Identity
from zk.tree import LeanIMT

RECORDS = make_records(6)


def zkid(*args: str) -> subprocess.CompletedProcess[str]:
    return run_zkid("evidence", "verify", *args)


def zkid_inproc(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command through Typer's runner (for option errors: no process start-up)."""
    result = invoke(zkid_app, ["evidence", "verify", *args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def anchor_on(contract: AnchorContract, log: EvidenceLog, size: int, root: bytes) -> Anchor:
    """Anchor (size, root) of ``log``'s key and origin on ``contract``; the bundle's anchor."""
    lid = log_id(log.origin, log.verifier.public_key)
    receipt = contract.anchor(lid, size, root)
    found = contract.get_anchor(lid, size)
    assert found is not None
    return Anchor(CHAIN_ID, contract.address, bytes(receipt["transactionHash"]), found.block_number,
                  found.timestamp, size, root)


@dataclass
class Setup:
    log: EvidenceLog
    manifest: Path
    rpc_url: str
    vkey: str
    real: AnchorContract
    registry: RegistryContract
    tmp: Path
    anchors: dict[int, Anchor]

    def trust(self, *extra: str) -> list[str]:
        """The verifier's own trust inputs: its manifest, its node, the log key, the relay key."""
        return ["--manifest", str(self.manifest), "--rpc-url", self.rpc_url, "--log-key", self.vkey,
                "--trusted-relay", RELAY, *extra]

    def write(self, bundle: EvidenceBundle, name: str) -> str:
        path = self.tmp / name
        path.write_text(bundle.to_json())
        return str(path)

    def honest_bundle(self, index: int = 2, ack: Acknowledgement | None = None) -> EvidenceBundle:
        return self.bundle(RECORDS[index], index, ack)

    def bundle(self, signed: SignedRecord, index: int, ack: Acknowledgement | None = None) -> EvidenceBundle:
        """The bundle of a logged record against the log's current size, anchored on the real
        contract (once per size: sizes must grow there)."""
        size = self.log.size
        if size not in self.anchors:
            self.anchors[size] = anchor_on(self.real, self.log, size, self.log.root(size))
        return build_bundle([(signed, index)], self.log, self.log.checkpoint(size), self.anchors[size], self.vkey, ack)


@pytest.fixture
def setup(tmp_path: Path, anvil: Any, deployed: Any, chain: Any, make_transactor: Callable[[int], Transactor]) -> Iterator[Setup]:
    origin = f"letro-zkid/trust{abs(hash(str(tmp_path))) % 10**8}/evidence"
    log = open_log(tmp_path / "log", origin)
    log.append_many(RECORDS)
    # The real log, registered by the deployment's registrar on the deployment's contract.
    real = AnchorContract(anvil.w3, deployed.anchor.address, make_transactor(0))
    real.register_log(origin, log.verifier.public_key)
    manifest = save_manifest(tmp_path / "verifier", deployed.manifest)
    registry = RegistryContract(anvil.w3, deployed.registry.address, make_transactor(0))
    yield Setup(log, manifest, anvil.rpc_url, log.verifier.vkey(), real, registry, tmp_path, {})
    log.close()


def test_forked_log_on_a_private_anchor_copy_is_refused(setup: Setup, anvil: Any,
                                                        make_transactor: Callable[[int], Transactor]) -> None:
    s = setup
    honest = s.honest_bundle()
    r = zkid(s.write(honest, "honest.json"), *s.trust(), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    verdict = json.loads(r.stdout)
    assert verdict["valid"] and verdict["anchoredInTrust"] and verdict["missingTrust"] == []
    # Every trusted value names its source; none is the bundle.
    assert verdict["trust"]["anchorContract"]["value"] == s.real.address
    assert str(s.manifest) in verdict["trust"]["anchorContract"]["source"]
    assert verdict["trust"]["logKey"]["source"] == "--log-key"
    assert verdict["trust"]["relayKeys"] == {"value": [RELAY], "source": "--trusted-relay"}

    # The log operator forks the log (record 2 replaced by another one), signs the fork's
    # checkpoint with the log key and anchors it on an EvidenceAnchor copy of its own.
    forged = sign_record(replace(RECORDS[2].record, event_time=RECORDS[2].record.event_time + 9000),
                         hashlib.sha256(b"letro-zkid test relay").digest())
    fork = merkle.MemoryTree([r.record.leaf_hash() for r in (*RECORDS[:2], forged, *RECORDS[3:])])
    size = fork.size
    attacker = make_transactor(3)
    copy_address, _ = attacker.deploy(load_artifact("EvidenceAnchor").creation_code())
    copy = AnchorContract(anvil.w3, copy_address, attacker)
    copy.register_log(s.log.origin, s.log.verifier.public_key)
    fork_anchor = anchor_on(copy, s.log, size, merkle.root_hash(fork, size))
    fork_cp = sign_checkpoint(Checkpoint(s.log.origin, size, merkle.root_hash(fork, size)), [s.log.signer])
    forked = build_bundle([(forged, 2)], fork, fork_cp, fork_anchor, s.vkey)

    # With the verifier's own manifest: a named failure, naming both contracts.
    r = zkid(s.write(forked, "fork.json"), *s.trust(), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    verdict = json.loads(r.stdout)
    assert not verdict["valid"] and verdict["firstFailure"] == "anchor_contract"
    detail = next(c["detail"] for c in verdict["checks"] if c["name"] == "anchor_contract")
    assert copy_address in detail and s.real.address in detail
    # The ledger check reads the trusted contract, where the fork was never anchored.
    assert next(c["status"] for c in verdict["checks"] if c["name"] == "anchor_on_ledger") == "failed"
    # The fork re-pointed at the real contract: the real contract holds another root.
    repointed = replace(forked, anchor=replace(forked.anchor, contract=s.real.address))
    r = zkid(s.write(repointed, "repointed.json"), *s.trust())
    assert r.returncode == 1 and r.stdout.startswith("INVALID: anchor_on_ledger"), r.stdout + r.stderr
    # Without the verifier's manifest the contract is never taken from the bundle: refused.
    r = zkid(s.write(forked, "fork.json"), "--rpc-url", s.rpc_url, "--log-key", s.vkey, "--trusted-relay", RELAY)
    assert r.returncode == 2 and "anchor contract and chain (--manifest or --trust)" in r.stderr
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1


def test_a_self_signed_issuer_is_not_valid(setup: Setup) -> None:
    s = setup
    # A record signed by a key of the signer's own making, in the log and anchored.
    forger = hashlib.sha256(b"self-signed relay").digest()
    issuer = Account.from_key(forger).address
    rec = EvidenceRecord(chain_id=CHAIN_ID, event=EventType.SUBMISSION_ACCEPTANCE, event_time=1_700_000_100,
                         issuer=issuer, blob_digest=hashlib.sha256(b"blob").digest(), region="eu-west")
    signed: SignedRecord = sign_record(rec, forger)
    ((index, _),) = s.log.append_many([signed])
    bundle = s.bundle(signed, index)
    path = s.write(bundle, "self-signed.json")
    r = zkid(path, *s.trust())
    assert r.returncode == 1 and r.stdout.startswith("INVALID: record_issuer"), r.stdout + r.stderr
    # The issuer of each record is printed, with whether it is trusted.
    assert f"issuer {issuer} (NOT a trusted relay key)" in r.stdout
    assert "[         ok] record_signature" in r.stdout
    r = zkid(path, *s.trust(), "--json")
    verdict = json.loads(r.stdout)
    assert verdict["records"] == [{"index": index, "evidenceId": rec.evidence_id(), "event": "SubmissionAcceptance",
                                   "eventTime": rec.event_time, "issuer": issuer, "issuerTrusted": False}]
    # The relay's own record of the same log verifies, its issuer printed as trusted.
    r = zkid(s.write(s.honest_bundle(1), "honest.json"), *s.trust())
    assert r.returncode == 0 and r.stdout.startswith("VALID"), r.stdout + r.stderr
    assert f"issuer {RELAY} (trusted relay key)" in r.stdout


def test_an_acknowledgement_from_an_unknown_group_is_not_valid(
    setup: Setup, anvil: Any, make_transactor: Callable[[int], Transactor]
) -> None:
    s = setup
    record = RECORDS[2].record
    # The recipient group the verifier trusts (two members), made by the operator.
    members = [Identity(f"trust-member-{i}") for i in range(2)]
    trusted = s.registry.create_group()
    s.registry.add_members(trusted, [m.commitment for m in members])
    # Someone else makes a one-member group of their own and acknowledges from it.
    outsider = Identity("outsider")
    other_registry = RegistryContract(anvil.w3, s.registry.address, make_transactor(4))
    theirs = other_registry.create_group()
    other_registry.add_member(theirs, outsider.commitment)
    ack = prove_acknowledgement(outsider, LeanIMT(leaves=[outsider.commitment]), record.record_hash(),
                                record.blob_digest)
    bundle = s.honest_bundle(2, ack)
    path = s.write(bundle, "outsider-ack.json")
    r = zkid(path, *s.trust("--trusted-group", str(trusted)), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    verdict = json.loads(r.stdout)
    assert verdict["firstFailure"] == "acknowledgement"
    assert "not a root of a trusted group" in next(c["detail"] for c in verdict["checks"] if c["name"] == "acknowledgement")
    assert verdict["trust"]["groupRoots"]["value"] == [trusted]
    # The same proof, for a verifier who trusts that group: the root is read from the ledger.
    assert zkid(path, *s.trust("--trusted-group", str(theirs))).returncode == 0

    # A member of the trusted group: valid, also once the group has changed (a superseded
    # root of a trusted group still counts).
    group = LeanIMT(leaves=[m.commitment for m in members])
    member_ack = prove_acknowledgement(members[0], group, record.record_hash(), record.blob_digest)
    s.registry.add_member(trusted, Identity("later-member").commitment)
    r = zkid(s.write(replace(bundle, acknowledgement=member_ack), "member-ack.json"),
             *s.trust("--trusted-group", str(trusted)), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["complete"] is True

    # EdDSA: the signer's commitment must be a member of a trusted group.
    stranger = sign_acknowledgement(record.record_hash(), "stranger")
    r = zkid(s.write(replace(bundle, acknowledgement=stranger), "eddsa.json"),
             *s.trust("--trusted-group", str(trusted)))
    assert r.returncode == 1 and r.stdout.startswith("INVALID: acknowledgement"), r.stdout + r.stderr
    s.registry.add_member(trusted, stranger.commitment())
    r = zkid(s.write(replace(bundle, acknowledgement=stranger), "eddsa.json"),
             *s.trust("--trusted-group", str(trusted)))
    assert r.returncode == 0, r.stdout + r.stderr
    # An acknowledgement without trusted groups: a missing trust input.
    r = zkid_inproc(path, *s.trust())
    assert r.returncode == 2 and "groups for the acknowledgement (--trusted-group)" in r.stderr


def test_an_old_root_cannot_acknowledge_a_later_record(setup: Setup) -> None:
    """A Semaphore acknowledgement's root must have been valid at the acknowledged record's
    event time (current, or superseded no earlier than event time - root window): a member
    removed long ago cannot acknowledge new records with the root it still holds."""
    s = setup
    window = 60
    members = [Identity(f"window-member-{i}") for i in range(2)]
    group = s.registry.create_group(root_window=window)
    s.registry.add_members(group, [m.commitment for m in members])
    old = LeanIMT(leaves=[m.commitment for m in members])
    s.registry.remove_member(group, members[0].commitment, list(old.generate_proof(0).siblings))  # supersedes old.root
    superseded = s.registry.root_superseded_at(group, old.root)
    assert superseded != 0

    def ack_bundle(event_time: int, name: str) -> str:
        record = EvidenceRecord(chain_id=CHAIN_ID, event=EventType.RELAY_ACCEPTANCE, event_time=event_time, issuer=RELAY,
                                blob_digest=hashlib.sha256(name.encode()).digest(), region="eu-west")
        signed = sign_record(record, RELAY_KEY)
        s.log.append_many([signed])
        # The removed member, with the root it held before its removal.
        ack = prove_acknowledgement(members[0], old, record.record_hash(), record.blob_digest)
        return s.write(s.bundle(signed, s.log.size - 1, ack), f"{name}.json")

    trust = s.trust("--trusted-group", str(group), "--json")
    within = zkid(ack_bundle(superseded + window, "within-window"), *trust)
    assert within.returncode == 0, within.stdout + within.stderr  # the root was still valid then
    later = zkid(ack_bundle(superseded + window + 3600, "an-hour-later"), *trust)
    assert later.returncode == 1, later.stdout + later.stderr
    verdict = json.loads(later.stdout)
    assert verdict["firstFailure"] == "acknowledgement"
    assert "valid at the record's event time" in next(c["detail"] for c in verdict["checks"] if c["name"] == "acknowledgement")


def test_missing_trust_inputs_fail_unless_explicitly_waived(setup: Setup) -> None:
    s = setup
    path = s.write(s.honest_bundle(), "bundle.json")
    r = zkid(path)
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "--no-trust-anchors" in line
    for need in ("log key (--log-key)", "anchor contract and chain", "ledger access (--rpc-url)",
                 "relay keys (--trusted-relay)"):
        assert need in line
    # One input missing is enough to refuse.
    everything_but_relays = ["--manifest", str(s.manifest), "--rpc-url", s.rpc_url, "--log-key", s.vkey]
    r = zkid_inproc(path, *everything_but_relays)
    assert r.returncode == 2 and "relay keys (--trusted-relay)" in r.stderr and "log key" not in r.stderr
    # Waived explicitly: the checks run, and the output says nothing was anchored in trust.
    r = zkid(path, "--no-trust-anchors")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("NOT VERIFIED: no check failed, but nothing was anchored in trust")
    assert "logKey: " in r.stdout and "(from bundle (not trusted))" in r.stdout
    assert "anchorContract: none (not anchored in trust)" in r.stdout
    r = zkid(path, "--no-trust-anchors", "--json")
    verdict = json.loads(r.stdout)
    assert verdict["valid"] is False and verdict["passed"] is True and verdict["anchoredInTrust"] is False
    assert verdict["missingTrust"] == ["record_issuer", "anchor_contract", "anchor_on_ledger"]
    # Waived with some inputs given: the output names what was not anchored.
    r = zkid(path, *everything_but_relays, "--no-trust-anchors")
    assert r.returncode == 0 and r.stdout.startswith("NOT VERIFIED: no check failed, but not anchored in trust: record_issuer")
    # A failure still fails when trust is waived.
    tampered = replace(s.honest_bundle(), log_key=open_log(s.tmp / "other", s.log.origin).verifier.vkey())
    r = zkid(s.write(tampered, "tampered.json"), "--no-trust-anchors")
    assert r.returncode == 1 and r.stdout.startswith("INVALID: checkpoint_signature")
    r = zkid(s.write(tampered, "tampered.json"), "--log-key", s.vkey, "--no-trust-anchors")
    assert r.returncode == 1 and r.stdout.startswith("INVALID: checkpoint_signature")


def test_trust_file_and_bad_trust_inputs(setup: Setup, deployed: Any) -> None:
    s = setup
    path = s.write(s.honest_bundle(), "bundle.json")
    trust = s.tmp / "trust.json"
    trust.write_text(json.dumps({"logKey": s.vkey, "chainId": CHAIN_ID, "anchorContract": s.real.address,
                                 "relayKeys": [RELAY.lower()]}))
    r = zkid(path, "--trust", str(trust), "--rpc-url", s.rpc_url, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    verdict = json.loads(r.stdout)
    assert verdict["valid"] and verdict["trust"]["anchorContract"]["source"].startswith(f"trust file {trust}")
    # A trust file naming another contract than the manifest: refused before any check.
    trust.write_text(json.dumps({"chainId": CHAIN_ID, "anchorContract": deployed.registry.address}))
    r = zkid_inproc(path, "--trust", str(trust), *s.trust())
    assert r.returncode == 2 and "the anchor contract differs" in r.stderr
    for bad in ({"relayKeys": ["0x1234"]}, {"chainId": CHAIN_ID}, {"unknown": 1}, {"groups": [-1]}, []):
        trust.write_text(json.dumps(bad))
        r = zkid_inproc(path, "--trust", str(trust), "--no-trust-anchors")
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, (bad, r.stderr)
    r = zkid_inproc(path, *s.trust("--trusted-relay", "not-an-address"))
    assert r.returncode == 2 and "--trusted-relay" in r.stderr
    # The node must be on the trusted chain: a manifest for another chain fails the ledger checks.
    other_chain = json.loads(s.manifest.read_text())
    other_chain["chain_id"] = 1
    wrong = s.tmp / "wrong-chain.json"
    wrong.write_text(json.dumps(other_chain))
    r = zkid(path, "--manifest", str(wrong), "--rpc-url", s.rpc_url, "--log-key", s.vkey, "--trusted-relay", RELAY,
             "--json")
    verdict = json.loads(r.stdout)
    assert r.returncode == 1 and verdict["firstFailure"] == "anchor_contract"
    ledger = next(c for c in verdict["checks"] if c["name"] == "anchor_on_ledger")
    assert ledger["status"] == "failed" and "trusted chain is 1" in ledger["detail"]
