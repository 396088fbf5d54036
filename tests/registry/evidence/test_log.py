"""The evidence log against the in-memory reference tree (zk.evidence.merkle), on both
backends (``database_url``: SQLite file, a real PostgreSQL server), and two replicas
appending to one database at once."""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.evidence.log import (
    BadSignature,
    EntryNotFound,
    EvidenceLog,
    MalformedRecord,
    default_origin,
    load_or_create_log_key,
)
from tests.registry.evidence.support import RELAY, make_records, open_log
from zk.evidence import merkle
from zk.evidence.note import NoteSigner, open_checkpoint
from zk.evidence.proof_format import parse_tlog_proof, verify_tlog_proof
from zk.evidence.record import EventType, EvidenceRecord, ReasonCode, record_hash

RECORDS = make_records(70)


def test_matches_memory_tree_and_proofs_verify(tmp_path: Path, database_url: str | None) -> None:
    log = open_log(tmp_path, database_url=database_url)
    ref = merkle.MemoryTree(cache=False)
    # Mixed single and batch appends, so batches straddle subtree boundaries.
    log.append(RECORDS[0])
    log.append_many(RECORDS[1:23])
    for r in RECORDS[23:30]:
        log.append(r)
    log.append_many(RECORDS[30:])
    for r in RECORDS:
        ref.append(r.record.leaf_hash())
    assert log.size == ref.size == 70
    for size in (1, 2, 3, 8, 13, 32, 33, 64, 70):
        assert log.root(size) == merkle.root_hash(ref, size)
        for index in {0, size // 2, size - 1}:
            assert log.inclusion(index, size) == merkle.inclusion_proof(ref, index, size)
        for first in {1, size // 3 or 1, size - 1 or 1, size}:
            proof = log.consistency(first, size)
            assert proof == merkle.consistency_proof(ref, first, size)
            merkle.check_consistency(first, size, log.root(first), log.root(size), proof)
    proof = log.tlog_proof(41)
    checkpoint = verify_tlog_proof(parse_tlog_proof(proof.format()), RECORDS[41].record.leaf_hash(),
                                   [log.verifier], log.origin)
    assert checkpoint.size == 70


def test_durable_across_reopen_and_duplicates_idempotent(tmp_path: Path, database_url: str | None) -> None:
    log = open_log(tmp_path, database_url=database_url)
    first = log.append_many(RECORDS[:10])
    root, note = log.root(), log.checkpoint()
    log.close()
    log = open_log(tmp_path, database_url=database_url)
    assert log.size == 10 and log.root() == root and log.checkpoint() == note
    # Appending after reopening continues the same tree (the frontier was reloaded).
    assert log.append(RECORDS[10]) == (10, RECORDS[10].record.evidence_id())
    assert log.append(RECORDS[3]) == first[3]
    assert log.append_many([RECORDS[11], RECORDS[11], RECORDS[5]]) == [
        (11, RECORDS[11].record.evidence_id()), (11, RECORDS[11].record.evidence_id()), first[5]]
    assert log.size == 12
    assert [new for _, _, new in log.append_detailed([RECORDS[12], RECORDS[0], RECORDS[12]])] == [True, False, False]
    assert log.size == 13
    assert log.root() == merkle.root_hash(merkle.MemoryTree(r.record.leaf_hash() for r in RECORDS[:13]))
    entry = log.get("0x" + RECORDS[4].record.evidence_id().upper())
    assert entry.index == 4 and entry.signed == RECORDS[4]
    cp, _ = open_checkpoint(log.checkpoint(), [log.verifier], origin=log.origin)
    assert (cp.size, cp.root_hash) == (13, log.root())


def test_bad_signature_rejected_and_batch_all_or_nothing(tmp_path: Path, database_url: str | None) -> None:
    log = open_log(tmp_path, database_url=database_url)
    other = make_records(1, start=500)[0]
    forged = dataclasses.replace(RECORDS[0], signature=other.signature)  # valid encoding, wrong signer
    with pytest.raises(BadSignature) as info:
        log.append(forged)
    assert info.value.code == "bad_signature"
    with pytest.raises(BadSignature, match="record 1"):
        log.append_many([RECORDS[1], forged, RECORDS[2]])
    assert log.size == 0
    with pytest.raises(MalformedRecord):
        log.append("not a record")  # type: ignore[arg-type]
    with pytest.raises(EntryNotFound):
        log.get(RECORDS[1].record.evidence_id())
    with pytest.raises(MalformedRecord):
        log.get("zz")


def test_log_key_file(tmp_path: Path) -> None:
    origin = default_origin("eu-west")
    assert origin == "letro-zkid/eu-west/evidence"
    signer = load_or_create_log_key(tmp_path, origin)
    mode = stat.S_IMODE(os.stat(tmp_path / "log.key").st_mode)
    assert mode == 0o600
    assert load_or_create_log_key(tmp_path, origin).skey() == signer.skey()
    with pytest.raises(ValueError, match="holds the key") as refused:
        load_or_create_log_key(tmp_path, "letro-zkid/other/evidence")
    # What to do about it: the region is fixed for the data directory (`zkid up --region`).
    assert "start with the region it was created with, or a new data directory" in str(refused.value)
    with pytest.raises(ValueError, match="named"):
        EvidenceLog(tmp_path / "x.sqlite", NoteSigner.generate("other"), origin)
    EvidenceLog(tmp_path / "y.sqlite", signer, origin).close()
    with pytest.raises(ValueError, match="is the log of"):
        EvidenceLog(tmp_path / "y.sqlite", NoteSigner.generate("letro-zkid/b/evidence"), "letro-zkid/b/evidence")


@settings(max_examples=60, deadline=None)
@given(
    chain_id=st.integers(1, (1 << 53) - 1),
    event=st.sampled_from(list(EventType)),
    event_time=st.integers(0, (1 << 53) - 1),
    links=st.lists(st.binary(min_size=32, max_size=32), max_size=16, unique=True),
    region=st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True),
    digest=st.binary(min_size=32, max_size=32),
)
def test_fast_record_hash_equals_reference(
    chain_id: int, event: EventType, event_time: int, links: list[bytes], region: str, digest: bytes
) -> None:
    reason = ReasonCode.RATE_LIMITED if event.needs_reason else None
    rec = EvidenceRecord(chain_id=chain_id, event=event, event_time=event_time, issuer=RELAY,
                         blob_digest=digest, region=region, links=tuple(links), reason=reason)
    assert record_hash(rec) == rec.record_hash()


def test_two_replicas_appending_at_once_keep_indices_sequential_and_proofs_valid(
    tmp_path: Path, database_url: str | None
) -> None:
    """Two EvidenceLog objects on one database (two replicas), two threads each, appending
    overlapping batches at once: every record gets one index, the indices are 0..n-1
    without gaps, and every entry's inclusion proof verifies against one checkpoint."""
    a = open_log(tmp_path, database_url=database_url)
    b = open_log(tmp_path, database_url=database_url)
    a.append(RECORDS[0])  # both replicas have appended before: each keeps a frontier
    b.append(RECORDS[1])
    results: dict[str, list[tuple[int, str]]] = {}
    jobs = {
        "a1": (a, RECORDS[2:22]), "a2": (a, RECORDS[22:42]),
        "b1": (b, RECORDS[32:52]), "b2": (b, RECORDS[42:62]),  # 32..41 also sent to a
    }

    def work(name: str) -> None:
        log, records = jobs[name]
        results[name] = [pair for i in range(0, len(records), 4) for pair in log.append_many(records[i : i + 4])]

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(jobs)
    index_of: dict[str, int] = {}
    for pairs in results.values():
        for index, evidence_id in pairs:
            assert index_of.setdefault(evidence_id, index) == index  # one index per record
    assert sorted(index_of.values()) == list(range(2, 62))
    assert a.size == b.size == 62
    reference = merkle.MemoryTree(cache=False)
    for i in range(62):
        reference.append(a.entry_at(i).signed.record.leaf_hash())
    assert a.root() == b.root() == merkle.root_hash(reference)
    note = b.checkpoint()
    for i in range(62):
        proof = a.tlog_proof(i, 62)
        assert proof.checkpoint == note
        checkpoint = verify_tlog_proof(parse_tlog_proof(proof.format()), a.entry_at(i).signed.record.leaf_hash(),
                                       [a.verifier], a.origin)
        assert checkpoint.size == 62
    # and both go on appending where the other left off
    assert a.append(RECORDS[62])[0] == 62 and b.append(RECORDS[63])[0] == 63
    a.close()
    b.close()
