"""Regional registries side by side (docs/regions.md): two registries,
each with its own Anvil (distinct chain ids), data directory and stores (SQLite files, or
its own database on one shared PostgreSQL server), running in one process and
registering members at the same time. Nothing of one region is written
anywhere else:

- files and databases: under the common parent only the two data directories are written,
  and no file of one region's directory, nor any row of its database, holds a commitment
  of the other region (in any encoding: decimal, hex, the 32 raw bytes), while its own
  commitments are there (the search finds them);
- ledgers: every transaction on a chain carries that chain's id, goes to a contract of that
  chain's deployment and comes from its operator, and the chain's membership events name
  exactly that region's commitments;
- APIs: each registry serves its own chain id, contract and region, and only its members.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.ledger.accounts import anvil_dev_account
from registry.ledger.registry_contract import MEMBERSHIP_EVENTS
from tests.registry.conftest import make_commitments
from tests.support.registry import AUTH, Registry, running_registry

REGIONS = {"eu-central": 31337, "gcc": 31338}
PER_REGION = 12  # more than batch_min_size: two batches' worth in two rounds


def _encodings(value: int) -> tuple[bytes, ...]:
    raw = value.to_bytes(32, "big")
    return str(value).encode(), raw.hex().encode(), raw.hex().upper().encode(), raw


def _files(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def _holds(files: dict[Path, bytes], value: int) -> list[Path]:
    return [path for path, data in files.items() if any(code in data for code in _encodings(value))]


def _register(registry: Registry, commitments: list[int]) -> None:
    with registry.client() as http:
        answer = http.post("/v1/groups/0/members", json={"commitments": [str(c) for c in commitments]}, headers=AUTH)
        assert answer.status_code == 202, answer.text


def _members(registry: Registry) -> list[int]:
    with registry.client() as http:
        page = http.get("/v1/groups/0/members", params={"start": 0, "limit": 1000}).json()
    return [int(m) for m in page["members"]]


def _ledger_commitments(registry: Registry) -> set[int]:
    found: set[int] = set()
    for event in registry.contract.group_events(0, 0):
        if event.name in ("MemberAdded", "MembersAdded"):
            args = event.args
            found.update(int(c) for c in (args["commitments"] if event.name == "MembersAdded" else [args["commitment"]]))
        else:
            assert event.name not in MEMBERSHIP_EVENTS  # nothing updated or removed here
    return found


def _check_ledger(registry: Registry, chain_id: int, mine: set[int]) -> None:
    w3 = registry.anvil.w3
    assert int(w3.eth.chain_id) == chain_id
    contracts = {record.address.lower() for record in registry.manifest.contracts.values()}
    operator = anvil_dev_account(0).address.lower()
    sent = 0
    for number in range(int(w3.eth.block_number) + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            sent += 1
            assert int(tx["chainId"]) == chain_id
            assert str(tx["from"]).lower() == operator
            assert tx["to"] is None or str(tx["to"]).lower() in contracts, tx["to"]
    assert sent > len(contracts)  # the deployment and the batches at least
    assert _ledger_commitments(registry) == mine


def _database_files(url: str) -> dict[Path, bytes]:
    """Every row of every table of the database at ``url`` (bytes as hex), as one "file"."""
    import psycopg

    rows: list[str] = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                rows.append(" ".join(v.hex() if isinstance(v, (bytes, memoryview)) and not isinstance(v, str) else str(v) for v in row))
    return {Path(url): "\n".join(rows).encode()}


@pytest.fixture(params=["sqlite", "postgresql"])
def regions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, dict[str, Registry], dict[str, str]]]:
    """The two registries under one parent directory; with ``postgresql`` each has its own
    database on one PostgreSQL server (the third value: their URLs)."""
    parent = tmp_path / "regions"
    parent.mkdir()
    databases: dict[str, str] = {}
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        databases = {region: server.create_database() for region in REGIONS}
    with contextlib.ExitStack() as stack:
        registries = {
            region: stack.enter_context(
                running_registry(
                    parent / region, ["--chain-id", str(chain)], region=region,
                    **({"database_url": databases[region]} if databases else {}),
                )
            )
            for region, chain in REGIONS.items()
        }
        yield parent, registries, databases


def test_two_regional_registries_write_only_their_own_ledger_stores_and_directory(
    regions: tuple[Path, dict[str, Registry], dict[str, str]],
) -> None:
    parent, registries, databases = regions
    members = {region: make_commitments(PER_REGION, seed=1000 * (i + 1)) for i, region in enumerate(registries)}
    half = PER_REGION // 2
    for part in (slice(0, half), slice(half, None)):  # both regions register at the same time, twice
        for region, registry in registries.items():
            _register(registry, members[region][part])
        for region, registry in registries.items():
            registry.wait_included(0, members[region][part])

    # The APIs: each registry is its own deployment and serves only its own members.
    refs = set()
    for region, registry in registries.items():
        group = httpx.get(f"{registry.url}/v1/groups/0").json()
        assert (group["chain_id"], group["registry_contract"].lower()) == (REGIONS[region], registry.deployment.contract)
        assert httpx.get(f"{registry.url}/v1/health").json()["region"] == region
        assert sorted(_members(registry)) == sorted(members[region])
        refs.add(registry.deployment.tag)
    assert len(refs) == 2  # two registry tags: a proof of one never names the other

    # The ledgers: each chain holds only its own region's transactions and members.
    for region, registry in registries.items():
        _check_ledger(registry, REGIONS[region], set(members[region]))

    # The files: only the two data directories under the parent, and none holds the other's.
    assert sorted(p.name for p in parent.iterdir()) == sorted(REGIONS)
    # With PostgreSQL, each registry's database is searched the same way (and holds the
    # registrations: the data directory then need not).
    files = {region: _files(parent / region) for region in registries}
    stores = {region: {**files[region], **(_database_files(databases[region]) if databases else {})} for region in registries}
    for region, own in stores.items():
        assert files[region], f"{region} wrote nothing?"
        other = next(r for r in registries if r != region)
        for commitment in members[region]:
            assert _holds(own, commitment), f"{region}'s stores do not hold its member (the search is blind)"
        for commitment in members[other]:
            assert not _holds(own, commitment), f"{other}'s member written under {region}: {_holds(own, commitment)}"
    # And every store each registry opened is in its own directory.
    for region, registry in registries.items():
        assert Path(registry.settings.data_dir).resolve() == (parent / region).resolve()
