"""Evidence log: proof generation over a large in-memory tree, and offline bundle checks.

Targets: inclusion proof generation <= 1 ms on a 1,000,000-leaf tree with cached
subtrees; bundle verification without ledger lookup <= 50 ms.

Prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_evidence [--leaves N] [--runs N] [--semaphore]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account

from zk.evidence import merkle
from zk.evidence.ack import prove_acknowledgement, sign_acknowledgement
from zk.evidence.bundle import Anchor, EvidenceBundle, build_bundle, verify_bundle
from zk.evidence.note import Checkpoint, NoteSigner, sign_checkpoint
from zk.evidence.record import EventType, EvidenceRecord, SignedRecord, sign_record

ORIGIN = "bench.example/evidence"


def _times_ms(fn: Callable[[], object], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 4),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 4),
        "max_ms": round(samples[-1], 4),
    }


def _records() -> list[SignedRecord]:
    key = hashlib.sha256(b"bench relay").digest()
    issuer = Account.from_key(key).address
    blob = hashlib.sha256(b"bench blob").digest()
    out: list[SignedRecord] = []
    links: tuple[bytes, ...] = ()
    for i, event in enumerate(
        [EventType.SUBMISSION_ACCEPTANCE, EventType.RELAY_ACCEPTANCE, EventType.CONTENT_CONSIGNMENT]
    ):
        rec = EvidenceRecord(chain_id=31337, event=event, event_time=1_700_000_000 + i, issuer=issuer,
                             blob_digest=blob, region="eu-west", links=links)
        out.append(sign_record(rec, key))
        links = (rec.record_hash(),)
    return out


def run(leaves: int = 1_000_000, runs: int = 30, semaphore: bool = False) -> dict[str, Any]:
    rng = random.Random(7)
    records = _records()
    positions = [leaves // 2, leaves // 2 + 17, leaves - 5]
    by_position = dict(zip(positions, records))

    start = time.perf_counter()
    tree = merkle.MemoryTree()
    for i in range(leaves):
        signed = by_position.get(i)
        tree.append(signed.record.leaf_hash() if signed else merkle.leaf_hash(i.to_bytes(8, "big")))
    build_s = time.perf_counter() - start

    indices = [rng.randrange(leaves) for _ in range(2000)]
    it = iter(indices * 2)
    inclusion = _times_ms(lambda: merkle.inclusion_proof(tree, next(it)), len(indices))
    root = merkle.root_hash(tree)
    proof = merkle.inclusion_proof(tree, 123_457 % leaves)
    leaf = tree.leaf_hash(123_457 % leaves)
    verify_inclusion = _times_ms(lambda: merkle.verify_inclusion(leaf, 123_457 % leaves, leaves, proof, root), 2000)
    sizes = iter([rng.randrange(1, leaves) for _ in range(500)])
    consistency = _times_ms(lambda: merkle.consistency_proof(tree, next(sizes)), 500)

    log = NoteSigner(ORIGIN, hashlib.sha256(b"bench log").digest())
    vkey = log.verifier().vkey()
    checkpoint = sign_checkpoint(Checkpoint(ORIGIN, leaves - 1, merkle.root_hash(tree, leaves - 1)), [log])
    anchor = Anchor(31337, Account.from_key(b"\x09" * 32).address, bytes(32), 1, 1_700_000_600, leaves,
                    merkle.root_hash(tree))
    entries = list(zip(records, positions))
    ack = sign_acknowledgement(records[2].record.record_hash(), "bench recipient")
    bundle = build_bundle(entries, tree, checkpoint, anchor, vkey, ack)
    assert verify_bundle(bundle, vkey).passed  # offline checks; no trust inputs here
    text = bundle.to_json()
    results: dict[str, Any] = {
        "benchmark": "evidence",
        "leaves": leaves,
        "tree_build_s": round(build_s, 2),
        "inclusion_proof_generation": inclusion,
        "inclusion_proof_verification": verify_inclusion,
        "consistency_proof_generation": consistency,
        "bundle_records": len(records),
        "bundle_json_bytes": len(text),
        "bundle_verify_eddsa_ack": _times_ms(lambda: verify_bundle(bundle, vkey), runs),
        "bundle_verify_from_json": _times_ms(lambda: verify_bundle(text, vkey), runs),
        "bundle_parse_json": _times_ms(lambda: EvidenceBundle.from_json(text), runs),
    }
    if semaphore:
        from zk.identity import Identity
        from zk.tree import LeanIMT

        member = Identity("bench member")
        group = LeanIMT(leaves=[member.commitment, Identity("other").commitment])
        anon = prove_acknowledgement(member, group, records[2].record.record_hash(), records[2].record.blob_digest)
        anon_bundle = build_bundle(entries, tree, checkpoint, anchor, vkey, anon)
        assert verify_bundle(anon_bundle, vkey).passed
        results["bundle_verify_semaphore_ack"] = _times_ms(lambda: verify_bundle(anon_bundle, vkey), runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--semaphore", action="store_true", help="also time a bundle with an anonymous ack")
    args = parser.parse_args()
    print(json.dumps(run(args.leaves, args.runs, args.semaphore), indent=2))


if __name__ == "__main__":
    main()
