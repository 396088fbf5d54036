"""A replica asked about a group that the shared index holds but its in-memory trees do
not yet (a follower between the leader's write and its own refresh) answers
``unknown_group`` (404), as one process does before its indexer reaches the creation,
not a ``KeyError`` (a 500). Found following README "Several replicas on PostgreSQL": a
`GET /v1/groups/0` on the follower right after start logged ``internal error KeyError``.

The other replica is a second :class:`ChainIndex` on the same index database, the way
tests/registry/service/test_index.py drives a leader and a follower."""

from __future__ import annotations

from typing import Any

import pytest

from registry.service.facade import RegistryError
from registry.service.index import FILE_NAME, ChainIndex
from registry.service.settings import Settings
from registry.storage.database import open_store_database
from tests.registry.service.test_index import Chain

GROUP = 77  # not on the ledger: only the other replica's index write knows it


def _other_replica_indexes_a_group(settings: Settings) -> None:
    other = ChainIndex(open_store_database(None, settings.data_dir, FILE_NAME, durable=False))
    try:
        ch = Chain()
        ch.number = 10**7  # past the service's cursor
        b = ch.block()
        other.apply([ch.create(b, GROUP)], [b], cursor=b.number, head=b.number)
    finally:
        other.close()


def test_a_group_not_yet_in_this_replicas_trees_is_unknown_not_an_internal_error(
    service: Any, registry_settings: Settings
) -> None:
    known = [g["group_id"] for g in service.groups()]
    _other_replica_indexes_a_group(registry_settings)
    assert service.index.group(GROUP) is not None  # the shared index has it...
    with pytest.raises(KeyError):
        service.index.tree(GROUP)  # ...this replica's trees do not, until its refresh
    for ask in (
        lambda: service.group_info(GROUP),
        lambda: service.members_page(GROUP, 0, 10),
        lambda: service.merkle_proof(GROUP, 1),
    ):
        with pytest.raises(RegistryError) as refused:
            ask()
        assert refused.value.code == "unknown_group"
    assert [g["group_id"] for g in service.groups()] == known  # listed once loaded, not a 500 now
    service.index.refresh()
    assert service.group_info(GROUP)["size"] == 0
    assert GROUP in [g["group_id"] for g in service.groups()]
