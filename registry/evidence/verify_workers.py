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
batch that verifies.

The hashes it returns are those of records whose signature recovered to their issuer;
:meth:`registry.evidence.log.EvidenceLog.append_detailed` takes them as checked.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from registry.evidence.log import EvidenceLogError, check_records, verified_hash
from zk.evidence.record import RecordError, SignedRecord


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

    def __init__(self, processes: int | None = None) -> None:
        cpus = os.cpu_count() or 1
        self.processes = (cpus if cpus > 1 else 0) if processes is None else processes
        self._pool: Executor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

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
            results = list(self._executor().map(_check_slice, slices))
        except Exception:  # a worker died, or the pool is shut down: check here
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
            parts = list(self._executor().map(_parse_slice, [items[i : i + size] for i in range(0, len(items), size)]))
        except Exception:  # a worker died, or the pool is shut down
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
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
