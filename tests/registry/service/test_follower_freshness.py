"""A follower replica judges the shared index's freshness by the leader's sync record,
aged on the database's clock: a follower whose own clock is an hour off still accepts a
fresh index, and refuses one whose leader stopped syncing (docs/deployment.md)."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from registry.service.facade import FreshIndexRoots
from registry.service.index import ChainIndex
from registry.storage.database import PostgresDatabase


def _roots(index: ChainIndex, max_age: float) -> FreshIndexRoots:
    return FreshIndexRoots(index, cast(Any, None), max_age, 10, leads=lambda: False)


def test_follower_freshness_ignores_the_replicas_clocks(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    leader = ChainIndex(PostgresDatabase(postgres_url, "zkid_index"))
    follower = ChainIndex(PostgresDatabase(postgres_url, "zkid_index"))
    try:
        assert _roots(follower, 30).stale()  # nothing recorded yet: fail closed
        leader.apply([], [], cursor=5, head=5)
        leader.record_sync(5, 0.0)
        # The follower's clock an hour ahead (a skew that cannot be produced for real here).
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        assert not _roots(follower, 30).stale()
        # A sync that began 60 s ago (database time) is too old for max_age 30.
        leader.record_sync(5, 60.0)
        assert _roots(follower, 30).stale()
        assert not _roots(follower, 120).stale()
        # Behind the head by more than max_lag: stale whatever the age.
        leader.record_sync(50, 0.0)
        assert _roots(follower, 30).stale()
    finally:
        leader.close()
        follower.close()


def test_sqlite_records_the_sync_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    index = ChainIndex(tmp_path / "index.sqlite")
    try:
        index.apply([], [], cursor=3, head=3)
        index.record_sync(3, 0.0)
        state = index.sync_state()
        assert state is not None and state[:2] == (3, 3) and 0 <= state[2] < 60
    finally:
        index.close()
