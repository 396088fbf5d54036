"""One large group: how long a restarted registry's ChainIndex takes to serve it.

Issue #14, item 5. The parent process fills a real chain index (``ChainIndex.apply`` with
hand-made ``GroupCreated``/``MembersAdded`` events whose ``newRoot`` an independent LeanIMT
computes, as the indexer would from the chain): ``--members`` leaves, after which the
index itself writes the group's tree snapshot (``snapshot_every = --members``); then
``--delta`` leaf changes in a later block (appends, a few updates and removals), which a
start-up replays, as after a crash. Then, each in a fresh process (the "restarted replica"):

- ``start``: ``ChainIndex(database)``, exactly what ``RegistryService.open`` does (schema
  check, then every group's tree restored from its snapshot plus the rows changed after it,
  root == the group's current root row), timed up to the first Merkle proof served; then
  Merkle proofs, single insertions and updates on the live tree, and the resident memory;
- ``profile``: where the restore's time goes (the steps of ``zk.tree_levels.load_levels``);
- ``rebuild`` (unless ``--no-rebuild``): the same open with the snapshot row set aside (put
  back afterwards), i.e. the tree built from every ``members`` row as without snapshots.

Leaf i is ``(i + 1) * C mod r`` as in ``bench_tree``. Prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_group_scale --members 1000000 --data-dir /tmp/gs1m
    .venv/bin/python -m benchmarks.bench_group_scale --data-dir /tmp/gs1m --no-rebuild  # reuse: start-ups only
    .venv/bin/python -m benchmarks.bench_group_scale --members 200 --delta 20 --no-rebuild  # smoke
    ... --database-url postgresql://...  # the index in PostgreSQL (schema zkid_index) instead
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry.ledger.base import LedgerEvent
from registry.service import tree_snapshot
from registry.service.index import FILE_NAME, BlockRef, ChainIndex
from registry.storage.database import Database, open_store_database
from zk import poseidon
from zk.field import R
from zk.tree import LeanIMT

ROOT = Path(__file__).resolve().parent.parent
C = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251
GROUP = 1
#: Leaves per MembersAdded event, events per applied block while filling the index.
EVENT_LEAVES = 10_000
EVENTS_PER_BLOCK = 10


def _leaf(i: int) -> int:
    return (i + 1) * C % R


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _stats_us(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "median_us": round(statistics.median(ordered) / 1000, 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000, 1),
        "max_us": round(ordered[-1] / 1000, 1),
    }


def _memory() -> dict[str, float]:
    """Resident memory now and at its peak (Linux /proc, KiB; VmHWM starts afresh at exec,
    unlike getrusage's ru_maxrss, which a child inherits from the process it forked from)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text("ascii").splitlines())
    return {
        "rss_mb": round(int(fields["VmRSS"].split()[0]) * 1024 / 1e6, 1),
        "peak_rss_mb": round(int(fields["VmHWM"].split()[0]) * 1024 / 1e6, 1),
    }


def _database(data_dir: Path, url: str | None) -> Database:
    return open_store_database(url, data_dir, FILE_NAME, durable=False)


# -- filling the index (parent process) -------------------------------------------------


class _Chain:
    """Hand-made events of one group, their roots from a mirror LeanIMT."""

    def __init__(self) -> None:
        self.tree = LeanIMT(unique=False)
        self.number = 0

    def block(self) -> BlockRef:
        self.number += 1
        return BlockRef(self.number, f"0x{self.number:064x}", f"0x{self.number - 1:064x}", 1_700_000_000 + 12 * self.number)

    def event(self, block: BlockRef, log_index: int, name: str, **args: Any) -> LedgerEvent:
        tx = f"0x{block.number:060x}{log_index:04x}"
        return LedgerEvent(name, dict(args), "0x" + "33" * 20, block.number, block.hash, tx, log_index)

    def add(self, block: BlockRef, log_index: int, values: list[int]) -> LedgerEvent:
        self.tree.insert_many(values)
        return self.event(block, log_index, "MembersAdded", groupId=GROUP, commitments=values, newRoot=self.tree.root)


def _apply(index: ChainIndex, block: BlockRef, events: list[LedgerEvent]) -> None:
    index.apply(events, [block], cursor=block.number, head=block.number)


def prepare(data_dir: Path, members: int, delta: int, url: str | None = None) -> dict[str, Any]:
    """Fill the index: ``members`` leaves (the index snapshots the group when the last
    ones are in), then ``delta`` changes in a later block (not snapshotted)."""
    chain = _Chain()
    index = ChainIndex(_database(data_dir, url), snapshot_every=max(1, members))
    try:
        b = chain.block()
        _apply(index, b, [chain.event(b, 0, "GroupCreated", groupId=GROUP, admin="0x" + "11" * 20, rootWindow=3600)])
        t0 = time.perf_counter()
        apply_s: list[float] = []
        for start in range(0, members, EVENT_LEAVES * EVENTS_PER_BLOCK):
            b = chain.block()
            stop = min(members, start + EVENT_LEAVES * EVENTS_PER_BLOCK)
            events = [
                chain.add(b, k, [_leaf(i) for i in range(s, min(stop, s + EVENT_LEAVES))])
                for k, s in enumerate(range(start, stop, EVENT_LEAVES))
            ]
            t1 = time.perf_counter()
            _apply(index, b, events)
            apply_s.append(time.perf_counter() - t1)
        fill_s = time.perf_counter() - t0
        saved = dict(index.snapshot_stats)
        _change(index, chain, members, delta)
        assert index.tree(GROUP).root == chain.tree.root
        t0 = time.perf_counter()
        snap = tree_snapshot.capture(chain.tree, chain.number).encode()  # the size and encode cost alone
        encode_s = time.perf_counter() - t0
    finally:
        index.close()
    return {
        "fill_s": round(fill_s, 1),
        "applies": len(apply_s),
        "last_apply_with_snapshot_s": round(apply_s[-1], 2) if apply_s else 0,
        "other_applies_median_s": round(statistics.median(apply_s[:-1]), 2) if len(apply_s) > 1 else 0,
        "snapshots_written": saved["saved"],
        "snapshot_bytes": len(snap.levels),
        "snapshot_encode_s": round(encode_s, 3),
    }


def _change(index: ChainIndex, chain: _Chain, members: int, delta: int) -> None:
    """In one later block: a few updates and removals of old leaves, the rest appended."""
    rng = random.Random(7)
    b = chain.block()
    events = []
    edits = min(members, delta // 10)
    for k, i in enumerate(rng.sample(range(members), edits)):
        if k % 2:
            old = chain.tree.leaf(i)
            chain.tree.remove(i)
            events.append(chain.event(b, k, "MemberRemoved", groupId=GROUP, index=i, commitment=old, newRoot=chain.tree.root))
        else:
            old, new = chain.tree.leaf(i), R - 1 - k
            chain.tree.update(i, new)
            events.append(
                chain.event(b, k, "MemberUpdated", groupId=GROUP, index=i, oldCommitment=old, newCommitment=new,
                            newRoot=chain.tree.root)
            )
    added = [_leaf(members + j) for j in range(delta - edits)]
    if added:
        events.append(chain.add(b, edits, added))
    _apply(index, b, events)


# -- the restarted replica (child processes) --------------------------------------------


def child_start(data_dir: Path, url: str | None, proofs: int, inserts: int) -> dict[str, Any]:
    """``ChainIndex(...)`` as a registry start does, a first proof, then the served operations."""
    t_start = time.perf_counter()
    index = ChainIndex(_database(data_dir, url))
    t_open = time.perf_counter()
    with index.lock:
        first = index.tree(GROUP).generate_proof(0)
    t_proof = time.perf_counter()
    stats = dict(index.snapshot_stats)
    assert stats["restored"] == 1 and stats["rebuilt"] == 0, stats
    tree = index.tree(GROUP)
    assert tree.root == index.roots(GROUP)[-1].root and LeanIMT.verify_proof(first)
    memory = _memory()

    rng = random.Random(1)
    proof_ns = []
    for _ in range(proofs):
        i = rng.randrange(tree.size)
        t0 = time.perf_counter_ns()
        with index.lock:
            proof = tree.generate_proof(i)
        proof_ns.append(time.perf_counter_ns() - t0)
    assert LeanIMT.verify_proof(proof)
    # On the live tree of this throwaway process (the index would do it in apply).
    size = tree.size
    insert_ns = []
    for k in range(inserts):
        t0 = time.perf_counter_ns()
        tree.insert(R - 10_000_000 - k)
        insert_ns.append(time.perf_counter_ns() - t0)
    # An update rehashes every level (20 at 1M): the cost of an insertion at its worst index.
    update_ns = []
    for k in range(inserts):
        i = rng.randrange(size)
        if tree.leaf(i) == 0:
            continue
        t0 = time.perf_counter_ns()
        tree.update(i, R - 20_000_000 - k)
        update_ns.append(time.perf_counter_ns() - t0)
    index.close()
    return {
        "open_s": round(t_open - t_start, 3),
        "first_proof_served_s": round(t_proof - t_start, 3),
        "snapshot_stats": stats,
        "size": size,
        **memory,
        "merkle_proof": _stats_us(proof_ns),
        "insert_one": _stats_us(insert_ns),
        "update_one": _stats_us(update_ns) if update_ns else {},
    }


def child_profile(data_dir: Path, url: str | None) -> dict[str, Any]:
    """Where the snapshot restore's time goes: the steps of ``load_levels``, one by one,
    and the read of the rows changed after the snapshot."""
    from zk import tree_levels

    db = _database(data_dir, url)
    marks = [time.perf_counter()]
    with db.connection() as conn:
        block, raw = conn.execute("SELECT block, levels FROM tree_snapshots WHERE group_id = ?", (GROUP,)).fetchone()
        levels = bytes(raw)
        del raw
        marks.append(time.perf_counter())
        changed = conn.execute(
            "SELECT idx, commitment, removed FROM members WHERE group_id = ? AND block_number > ?", (GROUP, block)
        ).fetchall()
        marks.append(time.perf_counter())
    db.close()
    size = tree_levels._parse_header(levels)  # header, length, SHA-256
    marks.append(time.perf_counter())
    decoded = tree_levels._decode(levels, size)  # bytes -> ints
    marks.append(time.perf_counter())
    tree = LeanIMT.from_levels(decoded, verify=False, unique=False)  # value checks, leaf index
    marks.append(time.perf_counter())
    for index in (0, size - 1, *random.Random(3).sample(range(size), min(size, 8))):
        tree_levels._check_path(decoded, index, poseidon.poseidon2)
    marks.append(time.perf_counter())
    steps = ("read_snapshot_row_s", "read_changed_rows_s", "header_and_sha256_s", "decode_ints_s",
             "values_and_leaf_index_s", "ten_spot_checked_paths_s")
    result: dict[str, Any] = {name: round(b - a, 3) for name, a, b in zip(steps, marks, marks[1:])}
    return result | {"changed_rows": len(changed), "tree_size": tree.size}


@contextmanager
def _snapshot_set_aside(db: Database) -> Iterator[None]:
    """The group's snapshot row moved under another group id (none exists), then back."""
    with db.transaction() as conn:
        conn.execute("UPDATE tree_snapshots SET group_id = ? WHERE group_id = ?", (-GROUP, GROUP))
    try:
        yield
    finally:
        with db.transaction() as conn:
            conn.execute("UPDATE tree_snapshots SET group_id = ? WHERE group_id = ?", (GROUP, -GROUP))


def child_rebuild(data_dir: Path, url: str | None) -> dict[str, Any]:
    """The same open without a snapshot: every row of the group read and hashed."""
    aside = _database(data_dir, url)
    with _snapshot_set_aside(aside):
        t0 = time.perf_counter()
        index = ChainIndex(_database(data_dir, url))
        t1 = time.perf_counter()
        stats = dict(index.snapshot_stats)
        assert stats["rebuilt"] == 1 and stats["restored"] == 0, stats
        assert index.tree(GROUP).root == index.roots(GROUP)[-1].root
        size = index.tree(GROUP).size
        memory = _memory()
        index.close()
    aside.close()
    # The hashing share of the build: the same Poseidon(2) on sample pairs, scaled to n - 1.
    sample = min(20_000, max(1, size - 1))
    pairs = [(_leaf(i), _leaf(i + 1)) for i in range(sample)]
    t2 = time.perf_counter()
    for a, b in pairs:
        poseidon.poseidon2(a, b)
    per_hash = (time.perf_counter() - t2) / sample
    return {
        "open_s": round(t1 - t0, 2),
        "of_which_poseidon_s_estimated": round(per_hash * (size - 1), 2),
        "poseidon2_us": round(per_hash * 1e6, 1),
        "snapshot_stats": stats,
        **memory,
    }


def _run_child(mode: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_group_scale", "--child", mode, "--data-dir", str(data_dir)]
    cmd += ["--proofs", str(args.proofs), "--inserts", str(args.inserts)]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=7200, cwd=ROOT)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _prepared(data_dir: Path, url: str | None) -> bool:
    """Whether the index already holds the group (a kept ``--data-dir`` or database)."""
    if url is None and not (data_dir / FILE_NAME).exists():
        return False
    db = _database(data_dir, url)
    try:
        with db.connection() as conn:
            return conn.execute("SELECT 1 FROM groups WHERE group_id = ?", (GROUP,)).fetchone() is not None
    except Exception:  # no index schema yet
        return False
    finally:
        db.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-group-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {
            "benchmark": "group_scale",
            "members": args.members,
            "database": "postgresql" if args.database_url else "sqlite",
            "poseidon_backend": poseidon.BACKEND,
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        }
        if _prepared(data_dir, args.database_url):  # kept by an earlier run: start-ups only
            results["members"] = "as prepared earlier"
        else:
            results["prepare"] = prepare(data_dir, args.members, args.delta, args.database_url)
        results["start_from_snapshot"] = _run_child("start", data_dir, args)
        results["start_from_snapshot_steps"] = _run_child("profile", data_dir, args)
        if not args.no_rebuild:
            results["start_by_rebuild"] = _run_child("rebuild", data_dir, args)
        results["load_average"] = [round(x, 2) for x in os.getloadavg()]
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="leaves in the group at the snapshot")
    parser.add_argument("--delta", type=int, default=2_000, help="leaves changed after the snapshot (replayed)")
    parser.add_argument("--proofs", type=int, default=2_000, help="Merkle proofs timed after the start")
    parser.add_argument("--inserts", type=int, default=200, help="single insertions timed after the start")
    parser.add_argument("--no-rebuild", action="store_true", help="skip timing the open without the snapshot")
    parser.add_argument(
        "--data-dir", type=Path, help="keep the index here (index.sqlite); if it holds the group, reuse it (start-ups only)"
    )
    parser.add_argument("--database-url", help="postgresql://... : the index in PostgreSQL (reused likewise)")
    parser.add_argument("--child", choices=("start", "profile", "rebuild"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "start":
        print(json.dumps(child_start(args.data_dir, args.database_url, args.proofs, args.inserts)))
    elif args.child == "profile":
        print(json.dumps(child_profile(args.data_dir, args.database_url)))
    elif args.child == "rebuild":
        print(json.dumps(child_rebuild(args.data_dir, args.database_url)))
    else:
        print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
