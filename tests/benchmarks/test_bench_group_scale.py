"""benchmarks/bench_group_scale.py in-process with tiny parameters (no timing assertions;
the subprocess smoke run is in test_smoke.py): the index it fills snapshots the group, and
a fresh ChainIndex on it restores the very tree from the snapshot plus the later rows."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_group_scale as bench


def test_start_restores_the_written_tree(tmp_path: Path) -> None:
    prepared = bench.prepare(tmp_path, 300, 40)
    assert prepared["snapshots_written"] == 1 and prepared["snapshot_bytes"] > 300 * 32
    assert bench._prepared(tmp_path, None)
    start = bench.child_start(tmp_path, None, proofs=20, inserts=3)  # asserts: restored, root
    assert start["snapshot_stats"]["restored"] == 1 and start["size"] == 336  # 300 + 36 appended
    assert start["rss_mb"] > 0 and start["merkle_proof"]["median_us"] > 0
    steps = bench.child_profile(tmp_path, None)
    # 4 old leaves edited + 36 appended after the snapshot: the rows the start replays.
    assert steps["changed_rows"] == 40 and steps["tree_size"] == 300
    rebuilt = bench.child_rebuild(tmp_path, None)  # asserts: rebuilt, root
    assert rebuilt["snapshot_stats"]["rebuilt"] == 1
    assert bench.child_start(tmp_path, None, proofs=1, inserts=1)["snapshot_stats"]["restored"] == 1  # put back
