"""The blob store's index lock is never held across file I/O (registry/relay/store.py):
a slow header write or pickup read of one blob holds up no send, pickup or ack of
another; a pickup racing the ack of a blob it listed skips it whole, never half-erased.

A file operation is held at a gate (an event) from another thread; the other store call
must finish while it is held. On a store that held its index lock across the I/O it
would wait for the gate, which only opens after the check (``join`` with a generous
timeout: a liveness check, not a timing one)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.relay.store import BlobStore, capability_hash

NOW = 1_800_000_000.0
SECRET = b"capability"


def _put(store: BlobStore, tag: int, blob: bytes, *apart: str) -> str:
    """Store a blob; with ``apart``, one whose file lock is none of theirs (a blob's lock is
    one of a fixed set, by the hash of its random id: put again until it differs)."""
    while True:
        blob_id = store.put(bytes([tag]) * 32, capability_hash(SECRET), blob, hashlib.sha256(blob).digest(), NOW)
        if all(store._file_lock(blob_id) is not store._file_lock(a) for a in apart):
            return blob_id
        assert store.delete(blob_id, SECRET) is not None


def _held_while(gate_entered: threading.Event, gate: threading.Event, slow: Callable[[], object], other: Callable[[], object]) -> None:
    """Run ``slow`` in a thread until it waits at the gate; ``other`` must finish meanwhile."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            slow()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert gate_entered.wait(30)
    done = threading.Event()

    def run_other() -> None:
        other()
        done.set()

    side = threading.Thread(target=run_other)
    side.start()
    finished = done.wait(30)
    gate.set()
    thread.join(30)
    side.join(30)
    assert finished, "the store call waited for another blob's file I/O"
    assert not errors


def _gated(monkeypatch: pytest.MonkeyPatch, store: BlobStore, name: str) -> tuple[threading.Event, threading.Event]:
    """Make ``store.<name>`` wait at a gate on its first call."""
    entered, gate = threading.Event(), threading.Event()
    original = getattr(store, name)
    first = [True]

    def slow(*args: Any) -> Any:
        if first[0]:
            first[0] = False
            entered.set()
            gate.wait(60)
        return original(*args)

    monkeypatch.setattr(store, name, slow)
    return entered, gate


def test_a_header_write_holds_up_no_send_or_pickup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    first = _put(store, 1, b"first")
    other = _put(store, 2, b"other", first)
    entered, gate = _gated(monkeypatch, store, "_set_header")

    def others() -> None:
        _put(store, 3, b"third")
        assert [b.id for b in store.pickup(bytes([2]) * 32, SECRET)] == [other]

    _held_while(entered, gate, lambda: store.set_acceptance(first, b"\x07" * 32), others)
    assert BlobStore(tmp_path / "blobs").pickup(bytes([1]) * 32, SECRET)[0].acceptance == b"\x07" * 32


def test_a_pickup_read_holds_up_no_send_or_ack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    first = _put(store, 1, b"first")
    other = _put(store, 2, b"other", first)
    entered, gate = _gated(monkeypatch, store, "_read")
    picked: list[Any] = []

    def others() -> None:
        _put(store, 3, b"third")
        assert store.delete(other, SECRET) is not None

    _held_while(entered, gate, lambda: picked.extend(store.pickup(bytes([1]) * 32, SECRET)), others)
    assert [b.blob for b in picked] == [b"first"] and not picked[0].handed_over
    assert not (tmp_path / "blobs" / f"{other}.blob").exists()


def test_a_pickup_skips_a_blob_acknowledged_after_it_listed_the_mailbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")
    mailbox = bytes([1]) * 32
    ids = [_put(store, 1, b"blob 0")]
    ids.append(_put(store, 1, b"blob 1", ids[0]))
    original = store._read
    erased: list[str] = []

    def read_then_ack_the_other(path: Path) -> Any:
        result = original(path)
        if not erased:  # the first blob is read: the recipient acks the other one now
            rest = [i for i in ids if i not in path.name]
            erased.extend(rest)
            ack = threading.Thread(target=store.delete, args=(rest[0], SECRET))
            ack.start()
            ack.join(30)
            assert not ack.is_alive(), "the ack waited for the pickup of another blob"
        return result

    monkeypatch.setattr(store, "_read", read_then_ack_the_other)
    picked = store.pickup(mailbox, SECRET)
    assert [b.id for b in picked] == [i for i in ids if i not in erased]
    assert picked[0].blob.startswith(b"blob ")
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [f"{picked[0].id}.blob"]


def test_two_pickups_at_once_hand_a_blob_over_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    for i in range(20):
        _put(store, 1, b"blob %d" % i)
    barrier = threading.Barrier(4)
    fresh: list[int] = []

    def pick() -> None:
        barrier.wait()
        fresh.append(sum(not b.handed_over for b in store.pickup(bytes([1]) * 32, SECRET)))

    threads = [threading.Thread(target=pick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(fresh) == 20
    assert all(b.handed_over for b in BlobStore(tmp_path / "blobs").pickup(bytes([1]) * 32, SECRET))
