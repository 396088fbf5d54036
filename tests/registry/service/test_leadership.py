"""The leader lease on a real PostgreSQL: one leader at a time, takeover after expiry with a
new token, fencing refuses a deposed leader's writes (registry/service/leadership.py)."""

from __future__ import annotations

import threading

import pytest

from registry.service.leadership import MIGRATIONS, Leadership, LostLeadership
from registry.storage.database import PostgresDatabase, SqliteDatabase
from registry.storage.migrations import migrate
from tests.support.wait import wait_until


class FakeMonotonic:
    """This replica's monotonic clock, moved by hand (the database keeps real time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lease_db(postgres_url: str):  # type: ignore[no-untyped-def]
    db = PostgresDatabase(postgres_url, "zkid_outbox", timeout=2.0)
    migrate(db, MIGRATIONS)
    yield db
    db.close()


def test_without_a_shared_database_the_process_always_leads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lead = Leadership(SqliteDatabase(tmp_path / "o.sqlite", durable=True))
    assert lead.renew() and lead.is_leader() and lead.token == 1 and not lead.shared
    lead.fence(None)  # nothing to check


def test_one_leader_then_takeover_with_a_new_token(lease_db: PostgresDatabase) -> None:
    a = Leadership(lease_db, lease=1.0, holder="a")
    b = Leadership(lease_db, lease=1.0, holder="b")
    assert a.renew() and not b.renew()
    assert a.is_leader() and not b.is_leader()
    first = a.token
    assert a.renew() and a.token == first  # renewal keeps the token
    # a stops renewing (killed or paused): after the lease b takes over with a new token.
    wait_until(b.renew, 10, "b to take the lease", interval=0.1)
    assert b.token is not None and first is not None and b.token == first + 1
    assert b.current()["holder"] == "b"
    # a, still believing it leads (its own clock says so), is fenced off.
    with pytest.raises(LostLeadership), lease_db.transaction(serialize=False) as conn:
        a.fence(conn)
    assert not a.is_leader()
    with lease_db.transaction(serialize=False) as conn:
        b.fence(conn)


def test_leadership_lapses_locally_before_the_database_lets_anyone_in(lease_db: PostgresDatabase) -> None:
    clock = FakeMonotonic()
    a = Leadership(lease_db, lease=5.0, holder="a", monotonic=clock)
    assert a.renew() and a.is_leader()
    clock.now += 5.0 - a.margin  # no renewal for lease - margin seconds of a's own time
    assert not a.is_leader()


def test_release_lets_a_successor_in_at_once(lease_db: PostgresDatabase) -> None:
    a = Leadership(lease_db, lease=60.0, holder="a")
    b = Leadership(lease_db, lease=60.0, holder="b")
    assert a.renew() and not b.renew()
    a.release()
    assert b.renew() and not a.is_leader()


def test_racing_replicas_elect_exactly_one(lease_db: PostgresDatabase) -> None:
    replicas = [Leadership(lease_db, lease=30.0, holder=f"r{i}") for i in range(6)]
    won: list[str] = []
    barrier = threading.Barrier(len(replicas))

    def run(r: Leadership) -> None:
        barrier.wait()
        if r.renew():
            won.append(r.holder)

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_database_down_keeps_no_one_leading_past_the_lease(postgres, lease_db: PostgresDatabase) -> None:  # type: ignore[no-untyped-def]
    clock = FakeMonotonic()
    a = Leadership(lease_db, lease=5.0, holder="a", monotonic=clock)
    assert a.renew()
    postgres.stop()
    try:
        assert a.renew()  # the renewal fails, but the lease it holds has not run out
        assert a.last_error is not None
        clock.now += 5.0
        assert not a.renew() and not a.is_leader()
    finally:
        postgres.start()
    # Back: the pool reconnects (with its own back-off) and the lease is taken again.
    wait_until(a.renew, 30, "a to take the lease again", interval=0.2, detail=lambda: repr(a.last_error))
    assert a.last_error is None and a.is_leader()  # back: the lease (expired or still ours) is taken again


def test_replicas_sharing_a_key_never_sign_the_same_nonce(lease_db: PostgresDatabase, anvil) -> None:  # type: ignore[no-untyped-def]
    """Two replicas (each its own Transactor and nonce counter, one signing key) sending at
    the same time, as the leader's batcher and a follower's group creation do: every
    transaction is accepted (before: a replica's cached counter was stale after the other
    sent, so its next send failed "nonce too low", or on a chain with a mempool replaced
    the other's pending transaction)."""
    from registry.ledger.accounts import anvil_dev_account
    from registry.ledger.tx import Transactor

    account = anvil_dev_account(7)
    replicas = []
    for _ in range(2):
        tx = Transactor(anvil.w3, account, poll_interval=0.01)
        tx.nonces.guard = Leadership(lease_db).send_lock
        replicas.append(tx)
    start = anvil.w3.eth.get_transaction_count(account.address)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def send(tx) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        for _ in range(4):
            try:
                tx.send({"to": anvil_dev_account(8).address, "value": 1})
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=send, args=(tx,)) for tx in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert anvil.w3.eth.get_transaction_count(account.address) == start + 8
