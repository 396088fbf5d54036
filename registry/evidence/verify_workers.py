"""Signature checks of evidence batches spread over worker processes.

Appending a record costs the registry one EIP-712 hash and one secp256k1 recovery
(:func:`registry.evidence.log.verified_hash`), about two thirds of its CPU per record, and
almost all of it holds the GIL (keccak through pycryptodome's Python wrappers, address
checks), so threads do not spread it; nor does parsing a record (another third).
:class:`VerifyWorkers` runs both in a pool of processes (``spawn``: never ``fork`` a
threaded server) for batches of at least :attr:`VerifyWorkers.min_batch` records: each
worker parses and checks a slice and returns the records with their hashes. Any failure in a slice (a bad signature, a malformed record, a worker that
died) makes the whole batch checked again in this process, which raises the precise error
(position and code) the single-process path raises: the workers only ever speed up a
batch that verifies. A worker that died breaks its pool: the next large batch starts a new
one. Workers exit when the server does, also when it is killed (SIGKILL leaves no time to
shut the pool down): each watches its parent (:func:`_exit_with_parent`).

The hashes it returns are those of records whose signature recovered to their issuer;
:meth:`registry.evidence.log.EvidenceLog.append_detailed` takes them as checked.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor
from typing import Any

from registry.evidence.log import EvidenceLogError, check_records, verified_hash
from zk.evidence.record import RecordError, SignedRecord


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, e.g. ``taskset`` or a container's
    cpuset), not every CPU of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _exit_with_parent() -> None:
    """In a worker (the pool's initializer): exit as soon as the parent process is gone.
    A parent killed with SIGKILL never shuts its pool down, and a worker blocked on the
    pool's call queue would otherwise wait forever (orphaned, holding its memory)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - always set in a spawned worker
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the spawn pipe closes
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _check_slice(records: Sequence[SignedRecord]) -> list[bytes] | None:
    """In a worker: the verified hashes of ``records``, or None if any fails."""
    try:
        return [verified_hash(r) for r in records]
    except EvidenceLogError:
        return None


def _parse_slice(items: Sequence[Any]) -> tuple[list[SignedRecord], list[bytes]] | None:
    """In a worker: parse ``items`` (JSON objects) as signed records and verify them;
    None if any fails."""
    try:
        records = [SignedRecord.from_dict(item) for item in items]
        return records, [verified_hash(r) for r in records]
    except (RecordError, EvidenceLogError):
        return None


class VerifyWorkers:
    """A lazily started pool of ``processes`` workers (module docstring); ``processes``
    0 (or one CPU) checks every batch in the calling thread."""

    #: Smallest batch sent to the workers (below it, the round trip costs more than it saves).
    min_batch = 64
    #: Most workers by default (each is a Python process of about 50 MiB; a batch has at
    #: most 1000 records, so more would each get a few records only).
    max_processes = 8

    def __init__(self, processes: int | None = None) -> None:
        cpus = min(_usable_cpus(), self.max_processes)
        self.processes = (cpus if cpus > 1 else 0) if processes is None else processes
        self._pool: Executor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _executor(self) -> Executor:
        with self._lock:
            if self._closed:  # no new workers after close (a request racing the shutdown)
                raise RuntimeError("verify workers closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent
                )
            return self._pool

    def _discard(self, pool: Executor) -> None:
        """Drop ``pool`` after it failed (a worker died: a broken pool fails every later
        call), so the next large batch starts fresh workers."""
        with self._lock:
            if self._pool is not pool:
                return
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def start(self) -> None:
        """Start the workers now (each imports the record code, about a second) rather
        than on the first large batch; returns at once."""
        if self.processes >= 2:
            pool = self._executor()
            for _ in range(self.processes):
                pool.submit(_check_slice, [])

    def check(self, records: Sequence[SignedRecord]) -> list[bytes]:
        """The verified record hashes of ``records`` (all or an error): raises what
        :func:`registry.evidence.log.check_records` raises for the first bad record."""
        if self.processes < 2 or len(records) < self.min_batch:
            return check_records(records)
        size = -(-len(records) // self.processes)
        slices = [list(records[i : i + size]) for i in range(0, len(records), size)]
        try:
            pool = self._executor()
        except RuntimeError:  # closed
            return check_records(records)
        try:
            results = list(pool.map(_check_slice, slices))
        except BrokenExecutor:  # a worker died: check here, and start fresh workers next time
            self._discard(pool)
            return check_records(records)
        except Exception:  # the pool shut down, or a record raised something unexpected
            return check_records(records)
        if any(r is None for r in results):
            return check_records(records)  # raises the first bad record's error
        return [h for part in results if part is not None for h in part]

    def parse_and_check(self, items: Sequence[Any]) -> tuple[list[SignedRecord], list[bytes]] | None:
        """Parse and verify a batch's JSON records in the workers: the records and their
        verified hashes, or None when the batch is small, there are no workers, or any
        record fails (the caller then takes the in-process path, which names the error)."""
        if self.processes < 2 or len(items) < self.min_batch:
            return None
        size = -(-len(items) // self.processes)
        try:
            pool = self._executor()
        except RuntimeError:  # closed
            return None
        try:
            parts = list(pool.map(_parse_slice, [items[i : i + size] for i in range(0, len(items), size)]))
        except BrokenExecutor:  # a worker died: fresh workers next time
            self._discard(pool)
            return None
        except Exception:  # the pool shut down, or hostile input raised something unexpected
            return None
        records: list[SignedRecord] = []
        hashes: list[bytes] = []
        for part in parts:
            if part is None:
                return None
            records += part[0]
            hashes += part[1]
        return records, hashes

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
