"""Fixtures of the registry core tests (index, indexer, outbox, batcher, service facade).

The chain fixtures (``anvil``, ``deployed``, ``chain``, ``ledger_tx``, ``make_transactor``)
come from the plugin ``tests.fixtures.anvil`` (``pytest -p tests.fixtures.anvil``): one real
Anvil per xdist worker, the contracts deployed once, a snapshot reverted after each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.ledger.deploy import save_manifest
from registry.service.settings import Settings
from registry.storage.database import open_store_database
from tests.support.registry import Registry, running_registry
from zk.field import R

# A large odd multiplier: (i + seed) * _SPREAD mod r gives distinct, well spread field elements.
_SPREAD = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251


def make_commitments(n: int, seed: int = 1) -> list[int]:
    """``n`` distinct non-zero field elements (fake identity commitments)."""
    values = [((i + seed) * _SPREAD) % R for i in range(n)]
    assert len(set(values)) == n and 0 not in values
    return values


@pytest.fixture
def commitments() -> Callable[..., list[int]]:
    return make_commitments


#: ``store_opener(cls, file_name, durable=..., **defaults)``: see the fixture.
StoreOpener = Callable[..., Callable[..., Any]]


@pytest.fixture
def store_opener(tmp_path: Path, database_url: str | None) -> Iterator[StoreOpener]:
    """``store_opener(cls, file_name, durable=..., **defaults)``: a function that opens a
    ``cls`` (Outbox, ChainIndex, AdmissionStore...) on this test's database, the same
    SQLite file or PostgreSQL database on every call (a reopening, or another replica),
    with ``defaults`` unless the call overrides them. Every store opened is closed after
    the test."""
    opened: list[Any] = []

    def opener(cls: Callable[..., Any], file_name: str, *, durable: bool, **defaults: Any) -> Callable[..., Any]:
        def make(**kwargs: Any) -> Any:
            store = cls(open_store_database(database_url, tmp_path, file_name, durable=durable), **{**defaults, **kwargs})
            opened.append(store)
            return store

        return make

    yield opener
    for store in opened:
        store.close()


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real registry (Anvil, service, HTTP on loopback) shared by the tests of a module;
    a module that needs other settings defines its own ``registry``."""
    with running_registry(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])) as reg:
        yield reg


@pytest.fixture
def registry_settings(tmp_path: Path, anvil: Any, deployed: Any, chain: Any) -> Settings:
    """Settings of a registry on the session Anvil (its deployment, a fresh data dir)."""
    data = tmp_path / "data"
    save_manifest(data, deployed.manifest)
    return Settings(
        data_dir=data,
        rpc_url=anvil.rpc_url,
        confirmations=2,
        batch_size=50,
        batch_interval=0.2,
        poll_interval=0.05,
        log_chunk=500,
    )


@pytest.fixture
def service(registry_settings: Settings) -> Iterator[Any]:
    """An opened :class:`RegistryService` (threads not started; drive it with ``sync`` /
    ``process_once``), indexed up to the head."""
    from registry.service.facade import RegistryService

    with RegistryService.open(registry_settings) as svc:
        svc.sync()
        yield svc


def index_snapshot(idx: Any) -> dict[str, Any]:
    """Everything a :class:`registry.service.index.ChainIndex` derived, for equality checks."""
    groups = idx.groups()
    return {
        "groups": groups,
        "members": {g.group_id: idx.members(g.group_id) for g in groups},
        "roots": {g.group_id: idx.roots(g.group_id) for g in groups},
        "trees": {g.group_id: idx.tree(g.group_id).export() for g in groups},
        "cursor": idx.cursor,
        "events": idx.event_count(),
    }


def assert_index_matches_chain(idx: Any, registry: Any, w3: Any) -> None:
    """The index agrees with the contract: every group's tree, settings, leaves and roots
    (superseded-at times and validity now, as the contract's views compute them)."""
    from registry.service.authorization import RootStatus

    assert [g.group_id for g in idx.groups()] == list(range(registry.group_count()))
    now = int(w3.eth.get_block("latest")["timestamp"])
    for record in idx.groups():
        g = record.group_id
        info = registry.group(g)
        tree = idx.tree(g)
        assert (tree.root, tree.size, tree.depth) == (info.root, info.size, info.depth)
        assert (record.admin.lower(), record.root_window) == (info.admin.lower(), info.root_window)
        for i, leaf in enumerate(tree.leaves):
            if leaf:
                assert registry.index_of(g, leaf) == i
        latest: dict[int, Any] = {}
        for r in idx.roots(g):
            latest[r.root] = r
        for root, r in latest.items():
            assert registry.root_superseded_at(g, root) == (r.superseded_time or 0)
            assert registry.is_root_valid(g, root) == (idx.root_status(g, root, now) is RootStatus.VALID)
        if info.root:
            assert latest[info.root].superseded_time is None
