"""Group commit on SQLite: many threads' small writes share one durable ``COMMIT``.

A durable SQLite store (``synchronous=FULL``) pays one fsync per commit. When each
registration or nullifier claim commits on its own, concurrent writers also queue in
SQLite's busy handler, whose sleeps (1, 2, 5, 10 ... ms) make the tail latency. Here a
writer hands its job (a function of the connection) to :meth:`GroupCommit.run`; the
first writer to arrive leads: it takes every job queued so far (at most
:attr:`GroupCommit.max_jobs`), runs them in one ``BEGIN IMMEDIATE`` transaction, each
inside its own ``SAVEPOINT`` (a job that raises is rolled back alone and gets its
exception; the others are unaffected), commits, and only then wakes the writers of the
batch with their results. Jobs that arrived during that commit are led by the first of
them (the leader of one batch never runs the next, so no request waits for others').

The invariant: :meth:`GroupCommit.run` returns a job's result only after the transaction
holding its writes committed; if ``BEGIN`` or ``COMMIT`` fails, every job of the batch
raises that error and nothing of the batch is kept (nothing was acknowledged); so does an
error after which SQLite rolled the whole transaction back itself (``SQLITE_FULL``). A job
that calls :meth:`GroupCommit.run` again on its own thread (a nested write through the
same store) writes inside its own job's transaction rather than waiting for itself.

PostgreSQL stores do not use this (each write commits on its own pooled connection, and
the server groups concurrent commits itself).
"""

from __future__ import annotations

import copy
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Generic, TypeVar

from registry.storage.sqlite import transaction

T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("fn", "result", "error", "shared", "done", "lead", "event")

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self.shared = False  # ``error`` is the whole batch's (the same object for every job)
        self.done = False
        self.lead = False
        self.event = threading.Event()


class GroupCommit:
    """Shared durable commits for one SQLite store (module docstring).

    ``connection()`` gives the calling thread's connection (the leader's is used);
    ``lock`` is held around each batch's transaction (the store's own writer lock, so
    its other writes stay serialised with the batches)."""

    #: Most jobs in one transaction (bounds the time a batch holds the write lock).
    max_jobs = 512

    def __init__(
        self, connection: Callable[[], sqlite3.Connection], lock: AbstractContextManager[Any] | None = None
    ) -> None:
        self._connection = connection
        self._write_lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self._lock = threading.Lock()
        self._queue: list[_Job[Any]] = []
        self._leading = False
        #: The batch connection of the thread now running a batch's jobs (a job that calls
        #: :meth:`run` again joins its own transaction instead of waiting for itself).
        self._running = threading.local()
        #: Transactions committed so far (tests: how many batches the jobs took).
        self.commits = 0

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside a shared transaction; its result once that committed.

        ``fn`` must only write through ``conn`` and must not commit; whatever it raises
        is raised here (its writes rolled back, the batch's other jobs kept)."""
        conn: sqlite3.Connection | None = getattr(self._running, "conn", None)
        if conn is not None:  # a job of this thread's batch writes again: part of that job
            return self._nested(conn, fn)
        job: _Job[T] = _Job(fn)
        with self._lock:
            self._queue.append(job)
            if not self._leading:
                self._leading = job.lead = True
        if not job.lead:
            job.event.wait()
        if job.lead and not job.done:  # first to arrive, or handed the lead by the last leader
            self._lead()
        if job.error is not None:
            if job.shared:  # the batch's own failure: one exception object per thread
                raise _own_copy(job.error) from job.error
            raise job.error
        return job.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Run one batch (the leader's own job is first in the queue), then hand the lead
        to the first job queued meanwhile, or give it up."""
        with self._lock:
            batch, self._queue = self._queue[: self.max_jobs], self._queue[self.max_jobs :]
        try:
            self._commit(batch)
        finally:
            for job in batch:
                job.done = True
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].event.set()
                else:
                    self._leading = False
            for job in batch:
                job.event.set()

    @staticmethod
    def _nested(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` inside the running job's transaction (its own savepoint: what it raises
        undoes its writes only); durable, and acknowledged, with the enclosing job."""
        conn.execute("SAVEPOINT group_commit_nested")
        try:
            result = fn(conn)
        except Exception:
            if conn.in_transaction:  # else SQLite rolled back the batch: the enclosing job fails
                conn.execute("ROLLBACK TO group_commit_nested")
                conn.execute("RELEASE group_commit_nested")
            raise
        conn.execute("RELEASE group_commit_nested")
        return result

    def _commit(self, batch: list[_Job[Any]]) -> None:
        try:
            with self._write_lock, transaction(self._connection()) as conn, self._running_on(conn):
                for job in batch:
                    conn.execute("SAVEPOINT group_commit_job")
                    try:
                        job.result = job.fn(conn)
                    except Exception as exc:  # this job's refusal: undo its writes only
                        if not conn.in_transaction:  # SQLite rolled back the batch (e.g. disk full)
                            raise  # every job of the batch gets this error, not "no such savepoint"
                        conn.execute("ROLLBACK TO group_commit_job")
                        job.error = exc
                    conn.execute("RELEASE group_commit_job")
            self.commits += 1
        except BaseException as exc:  # BEGIN, a savepoint or COMMIT failed: nothing was kept
            for job in batch:
                job.result, job.error, job.shared = None, exc, True
            raise

    @contextmanager
    def _running_on(self, conn: sqlite3.Connection) -> Iterator[None]:
        self._running.conn = conn
        try:
            yield
        finally:
            self._running.conn = None


def _own_copy(exc: BaseException) -> BaseException:
    """A new exception equal to ``exc`` (type, arguments, attributes such as
    ``sqlite_errorcode``) for one waiting thread: raising one object from several threads
    at once would interleave their frames in its shared ``__traceback__``."""
    try:
        clone = copy.copy(exc)
    except Exception:  # an exception type that cannot be rebuilt from its arguments
        return RuntimeError(f"the group commit failed: {type(exc).__name__}: {exc}")
    clone.__traceback__ = None
    return clone
