"""The blob store remembers each blob's home registry (format version 2) and still reads
the files of version 1 (registry/relay/store.py): a federated relay sends a blob's pickup
and ack evidence to the log of the registry its send authorization named."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from registry.relay.store import BlobStore, capability_hash
from zk.relay_scope import RegistryRef

HOME = RegistryRef(31338, "0x5FbDB2315678afecb367f032d93F642f64180aa3").tag
NOW = 1_800_000_000.0


def test_home_survives_reopen_pickup_and_ack(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    mailbox, secret = bytes(range(32)), b"secret-capability"
    with_home = store.put(mailbox, capability_hash(secret), b"one", hashlib.sha256(b"one").digest(), NOW, home=HOME)
    without = store.put(mailbox, capability_hash(secret), b"two", hashlib.sha256(b"two").digest(), NOW)
    store.set_acceptance(with_home, b"\x07" * 32)
    reopened = BlobStore(tmp_path / "blobs")
    homes = {b.id: b.home for b in reopened.pickup(mailbox, secret)}
    assert homes == {with_home: HOME, without: None}
    again = BlobStore(tmp_path / "blobs")  # the handed-over flag kept the home bit
    picked = {b.id: (b.home, b.handed_over, b.acceptance) for b in again.pickup(mailbox, secret)}
    assert picked[with_home] == (HOME, True, b"\x07" * 32)
    removed = again.delete(with_home, secret)
    assert removed is not None and removed.home == HOME


def test_a_version_1_file_is_read_without_a_home(tmp_path: Path) -> None:
    directory = tmp_path / "blobs"
    directory.mkdir()
    blob, mailbox, secret = b"written by an earlier relay", b"\x01" * 32, b"old-capability"
    header = struct.pack(
        ">5sB2xd32s32s32s32sQ", b"ZKRB\x01", 0, NOW // 3600 * 3600, mailbox, capability_hash(secret),
        hashlib.sha256(blob).digest(), bytes(32), len(blob),
    )
    (directory / ("ab" * 16 + ".blob")).write_bytes(header + blob)
    store = BlobStore(directory)
    (found,) = store.pickup(mailbox, secret)
    assert (found.blob, found.home, found.handed_over) == (blob, None, False)
    assert BlobStore(directory).pickup(mailbox, secret)[0].handed_over  # flags updated in place


def test_home_must_be_a_96_bit_tag(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError, match="96-bit"):
        store.put(b"\x02" * 32, b"\x03" * 32, b"x", hashlib.sha256(b"x").digest(), NOW, home=1 << 96)
