"""The relay's blob store: one file per blob, overwritten with zeros and unlinked on delete.

Why files and not SQLite: a deleted row's bytes stay in SQLite's files. The WAL keeps old
page images until a checkpoint, and even with ``PRAGMA secure_delete=ON`` and a truncating
checkpoint after every delete, copies of cells that b-tree rebalancing moved to another
page survive in that page's unused space (measured: a mailbox tag, digest and ciphertext
of a deleted blob were still in ``relay.sqlite``). A file holding exactly one blob can be
erased: overwrite it with zeros, flush, unlink. When :meth:`BlobStore.delete` or
:meth:`BlobStore.purge` returns, no file of the store holds the blob, its mailbox tag,
pickup hash or digest.

Layout: ``<dir>/<id>.blob``, written as ``<id>.tmp``, flushed, renamed and the directory
flushed before :meth:`BlobStore.put` returns (a blob is on disk before the relay's 201).
The directory flush is a group commit (:class:`GroupFsync`): concurrent puts share one
``fsync`` of the directory, and each put returns only after an ``fsync`` that began after
its rename, so none returns before its directory entry is durable.
File format, version 2 (integers big-endian)::

    0    magic b"ZKRB" + version 0x02
    5    flags: bit 0 handed over, bit 1 acceptance hash set, bit 2 home registry set
    6    2 reserved bytes
    8    received_at (float64, Unix seconds, rounded down to the UTC hour)
    16   mailbox tag (32)
    48   pickup hash: SHA-256 of the pickup capability (32)
    80   digest: SHA-256 of the blob (32), checked when the store opens
    112  hash of the acceptance evidence record (32, zeros if unset)
    144  home registry tag (12, zeros if unset; docs/authorization.md "Registry tag")
    156  4 reserved bytes
    160  blob length (uint64)
    168  blob

The home registry is the one the send authorization's scope named (a federated relay
sends the blob's pickup and ack evidence to that registry's log); the relay saw it in
the proof anyway, and it says nothing about the recipient. Version 1 files (no home
field: the blob length at 144, the blob at 152) are read as they are, with no home.

The flags and the acceptance hash are updated in place without a flush: a power cut may
lose them (a second consignment record, an access record without its link), never a blob.

Privacy (docs/privacy.md): a blob file holds a mailbox tag, so it holds no time finer than
the hour: ``received_at`` is the start of the UTC hour of reception (``time_resolution``;
a relay whose retention is shorter than an hour uses its retention), and the file's
modification and access times are set to that hour too. Retention only needs that: a blob
is purged once the retention has passed since the *end* of its hour, so it is kept at
most one resolution step longer than the retention, never shorter. Ids are random. A file of an
earlier version whose time is finer is rounded in place when the store opens. (A file's
change time and inode number, which no program can set, still follow creation: see
docs/privacy.md "What the file system keeps".)

The mailbox index (tag -> pickup hash and blob ids) lives in memory and is rebuilt from the
files when the store opens. Its lock is held for memory only, never across file I/O: with
many sends, pickups and acks at once a lock held across a read, a header write or an
``fsync`` queued every other request behind it (measured: most of a blob's time under
load, BENCHMARKS.md). A blob file's header updates, reads by a pickup and erasure are
serialised by a lock of that file (taken before the index lock, never while holding it):
a pickup reads a blob whole or skips one erased since it listed the mailbox, and the last
header written holds every flag set so far. A file that does not verify when the store
opens (a delete interrupted by a crash, a temporary file of an unfinished put) is erased.
Nothing about a sender is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The store's directory in the relay's data directory.
DIR_NAME = "blobs"
#: The blob store of earlier versions (SQLite); migrated into files and erased at open.
FILE_NAME = "relay.sqlite"

_MAGIC_V1 = b"ZKRB\x01"
_MAGIC = b"ZKRB\x02"
_HEADER_V1 = struct.Struct(">5sB2xd32s32s32s32sQ")
_HEADER = struct.Struct(">5sB2xd32s32s32s32s12s4xQ")
_FLAGS_AT = 5
_ACCEPTANCE_AT = 112
_HANDED_OVER = 1
_HAS_ACCEPTANCE = 2
_HAS_HOME = 4
#: Bytes of a home registry tag (96 bits).
HOME_BYTES = 12
_SUFFIX = ".blob"
_TMP_SUFFIX = ".tmp"
_CHUNK = 1 << 20
#: Locks of blob files (a blob's file lock is one of these, by its id's hash).
_FILE_LOCKS = 64
_RECEIVED_AT = 8
#: Resolution of a blob's reception time (seconds).
TIME_RESOLUTION = 3600


def coarse_time(t: float, resolution: int = TIME_RESOLUTION) -> float:
    """``t`` rounded down to a multiple of ``resolution`` seconds."""
    return float(int(t) // resolution * resolution)


class MailboxConflict(ValueError):
    """The mailbox tag exists (or is being written) with another pickup hash."""


class WrongCapability(PermissionError):
    """The pickup capability does not open this mailbox (or this blob)."""


@dataclass(frozen=True)
class StoredBlob:
    id: str
    mailbox: bytes
    blob: bytes
    digest: bytes
    received_at: float
    handed_over: bool
    acceptance: bytes | None
    #: The home registry's tag (federated relays), None if unknown.
    home: int | None = None


@dataclass
class _Entry:
    mailbox: bytes
    digest: bytes
    received_at: float
    handed_over: bool
    acceptance: bytes | None
    home: int | None = None

    def flags(self) -> int:
        return (
            (_HANDED_OVER if self.handed_over else 0)
            | (0 if self.acceptance is None else _HAS_ACCEPTANCE)
            | (0 if self.home is None else _HAS_HOME)
        )


@dataclass
class _Mailbox:
    pickup_hash: bytes
    ids: set[str]


def capability_hash(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GroupFsync:
    """``fsync`` of one directory shared by concurrent callers (group commit).

    :meth:`sync` returns once an ``fsync`` that *started after the call* has succeeded
    (whatever the caller did to the directory before calling is then durable), and raises
    that ``fsync``'s ``OSError`` if it failed. While one ``fsync`` runs, later callers
    wait and the first of them runs the next one, for all of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cv = threading.Condition()
        self._started = 0  # fsyncs begun so far (the n-th has number n)
        self._done = 0  # the last finished
        self._running = False
        self._failed: dict[int, OSError] = {}  # number -> error, of recent failures
        #: fsyncs run, and sync() calls (a test and the benchmark read them)
        self.fsyncs = 0
        self.calls = 0

    def sync(self) -> None:
        with self._cv:
            self.calls += 1
            # A sync already running may have begun before the caller's change: wait for the next.
            target = self._started + 1
            while self._done < target:
                if self._running:
                    self._cv.wait()
                    continue
                self._running = True
                self._started += 1
                number = self._started
                self._cv.release()
                error: OSError | None = None
                try:
                    _fsync_dir(self.path)
                except OSError as exc:
                    error = exc
                finally:
                    self._cv.acquire()
                    self._running = False
                    self._done = number
                    self.fsyncs += 1
                    if error is not None:
                        self._failed[number] = error
                    for old in [n for n in self._failed if n < number - 64]:
                        del self._failed[old]
                    self._cv.notify_all()
            failed = self._failed.get(target)
        if failed is not None:
            raise failed


def _read_without_atime(path: Path) -> bytes:
    """The file's bytes, read without setting its access time (``O_NOATIME``): a pickup
    must not stamp the blob file with the moment it was read (docs/privacy.md). The flag
    needs the file's owner; anyone else reads it the ordinary way."""
    flags = os.O_RDONLY | getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def erase_file(path: Path) -> None:
    """Overwrite ``path`` with zeros in place, flush it to disk, then unlink it (no-op if
    it does not exist). In place, so on a non-copy-on-write file system the old blocks
    themselves are overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        zeros = bytes(min(size, _CHUNK))
        offset = 0
        while offset < size:
            offset += os.pwrite(fd, zeros[: min(_CHUNK, size - offset)], offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)


class BlobStore:
    def __init__(
        self, directory: Path | str, *, legacy: Path | str | None = None, time_resolution: int = TIME_RESOLUTION
    ) -> None:
        """Open (or create) the store in ``directory``; ``legacy``: an ``relay.sqlite`` of an
        earlier version whose blobs are moved into files, after which it is erased;
        ``time_resolution``: seconds to which reception times are rounded down."""
        if time_resolution < 1:
            raise ValueError("time_resolution must be at least 1 second")
        self.resolution = int(time_resolution)
        self.path = Path(directory)
        self._lock = threading.Lock()
        self._file_locks = [threading.Lock() for _ in range(_FILE_LOCKS)]
        self._blobs: dict[str, _Entry] = {}
        self._mailboxes: dict[bytes, _Mailbox] = {}
        self._pending: dict[bytes, tuple[bytes, int]] = {}  # tag -> (pickup hash, sends in flight)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir_sync = GroupFsync(self.path)
        self._load()
        if legacy is not None and Path(legacy).exists():
            self._migrate(Path(legacy))

    def close(self) -> None:
        """Nothing to flush: every put was flushed before it returned."""

    # -------------------------------------------------------------- files

    def _file(self, blob_id: str) -> Path:
        return self.path / f"{blob_id}{_SUFFIX}"

    def _file_lock(self, blob_id: str) -> threading.Lock:
        """The lock of a blob's file (module docstring); take it before ``_lock``."""
        return self._file_locks[hash(blob_id) % _FILE_LOCKS]

    def _write(self, blob_id: str, mailbox: bytes, pickup_hash: bytes, blob: bytes, digest: bytes, now: float,
               handed_over: bool = False, acceptance: bytes | None = None, home: int | None = None) -> None:
        flags = _Entry(mailbox, digest, now, handed_over, acceptance, home).flags()
        now = coarse_time(now, self.resolution)
        home_bytes = bytes(HOME_BYTES) if home is None else home.to_bytes(HOME_BYTES, "big")
        header = _HEADER.pack(
            _MAGIC, flags, now, mailbox, pickup_hash, digest, acceptance or bytes(32), home_bytes, len(blob)
        )
        tmp = self.path / f"{blob_id}{_TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(header + blob)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.utime(tmp, (now, now))  # no modification time finer than the stored hour
            os.rename(tmp, self._file(blob_id))
            self._coarse_directory_time(now)
            self.dir_sync.sync()
        except BaseException:
            try:
                erase_file(tmp)
            except OSError:
                pass  # erased again when the store next opens
            self._coarse_directory_time(now)  # the failed put's moment is not kept either
            raise

    def _set_header(self, blob_id: str, *writes: tuple[int, bytes]) -> None:
        """Write ``(offset, bytes)`` pieces of a blob file's header (under its file lock)."""
        fd = os.open(self._file(blob_id), os.O_RDWR)
        try:
            for offset, data in writes:
                os.pwrite(fd, data, offset)
            # The write set the modification time to now: back to the stored hour.
            (hour,) = struct.unpack(">d", os.pread(fd, 8, _RECEIVED_AT))
            os.utime(fd, (hour, hour))
        finally:
            os.close(fd)

    def _read(self, path: Path) -> tuple[_Entry, bytes, bytes] | None:
        """(entry, pickup hash, blob) of a valid file, else None."""
        try:
            data = _read_without_atime(path)
        except OSError:
            return None
        home: int | None = None
        if data[:5] == _MAGIC_V1 and len(data) >= _HEADER_V1.size:
            magic, flags, received_at, mailbox, pickup_hash, digest, acceptance, length = _HEADER_V1.unpack_from(data)
            blob = data[_HEADER_V1.size:]
        elif data[:5] == _MAGIC and len(data) >= _HEADER.size:
            magic, flags, received_at, mailbox, pickup_hash, digest, acceptance, home_bytes, length = _HEADER.unpack_from(data)
            blob = data[_HEADER.size:]
            home = int.from_bytes(home_bytes, "big") if flags & _HAS_HOME else None
        else:
            return None
        if length != len(blob) or not hmac.compare_digest(hashlib.sha256(blob).digest(), digest):
            return None
        entry = _Entry(
            mailbox, digest, received_at, bool(flags & _HANDED_OVER), acceptance if flags & _HAS_ACCEPTANCE else None, home
        )
        return entry, pickup_hash, blob

    def _load(self) -> None:
        erased = 0
        for path in sorted(self.path.iterdir()):
            name = path.name
            if name.endswith(_TMP_SUFFIX):
                erase_file(path)  # a put that did not finish: never acknowledged
                erased += 1
                continue
            if not name.endswith(_SUFFIX):
                continue
            read = self._read(path)
            if read is None:
                erase_file(path)  # a delete interrupted by a crash, or damage
                erased += 1
                continue
            entry, pickup_hash, _ = read
            blob_id = name[: -len(_SUFFIX)]
            if entry.received_at != coarse_time(entry.received_at, self.resolution):  # written by an earlier version
                entry.received_at = coarse_time(entry.received_at, self.resolution)
                self._set_header(blob_id, (_RECEIVED_AT, struct.pack(">d", entry.received_at)))
                os.utime(path, (entry.received_at, entry.received_at))
            box = self._mailboxes.get(entry.mailbox)
            if box is None:
                self._mailboxes[entry.mailbox] = _Mailbox(pickup_hash, {blob_id})
            elif hmac.compare_digest(box.pickup_hash, pickup_hash):
                box.ids.add(blob_id)
            else:  # cannot happen through put; keep the mailbox openable by one capability
                erase_file(path)
                erased += 1
                continue
            self._blobs[blob_id] = entry
        if erased:
            self._coarse_directory_time(time.time())
            log.warning("blob store: erased %d unfinished or unreadable file(s)", erased)

    def _migrate(self, legacy: Path) -> None:
        try:
            db = sqlite3.connect(str(legacy), isolation_level=None)
            try:
                rows = db.execute(
                    "SELECT b.id, b.mailbox, b.blob, b.received_at, b.handed_over, b.acceptance, m.pickup_hash"
                    " FROM blobs b JOIN mailboxes m ON m.tag = b.mailbox"
                ).fetchall()
            finally:
                db.close()  # the last connection: SQLite folds the -wal into the file
        except sqlite3.Error as exc:
            raise ValueError(f"{legacy} (a blob store of an earlier version) cannot be read ({type(exc).__name__})") from None
        for blob_id, mailbox, blob, received_at, handed_over, acceptance, pickup_hash in rows:
            if blob_id in self._blobs:
                continue  # moved by a migration interrupted before the erase below
            blob = bytes(blob)
            self._write(str(blob_id), bytes(mailbox), bytes(pickup_hash), blob, hashlib.sha256(blob).digest(),
                        float(received_at), bool(handed_over), None if acceptance is None else bytes(acceptance))
            self._index(str(blob_id), bytes(mailbox), bytes(pickup_hash), hashlib.sha256(blob).digest(), float(received_at),
                        bool(handed_over), None if acceptance is None else bytes(acceptance))
        for suffix in ("-wal", "-shm", "-journal", ""):
            erase_file(legacy.with_name(legacy.name + suffix))
        log.info("blob store: moved %d blob(s) out of %s", len(rows), legacy.name)

    def _index(self, blob_id: str, mailbox: bytes, pickup_hash: bytes, digest: bytes, received_at: float,
               handed_over: bool = False, acceptance: bytes | None = None, home: int | None = None) -> None:
        self._blobs[blob_id] = _Entry(mailbox, digest, coarse_time(received_at, self.resolution), handed_over, acceptance, home)
        box = self._mailboxes.setdefault(mailbox, _Mailbox(pickup_hash, set()))
        box.ids.add(blob_id)

    def _unindex(self, blob_id: str) -> _Entry:
        entry = self._blobs.pop(blob_id)
        box = self._mailboxes[entry.mailbox]
        box.ids.discard(blob_id)
        if not box.ids:
            del self._mailboxes[entry.mailbox]
        return entry

    # -------------------------------------------------------------- sends

    def _owner(self, mailbox: bytes) -> bytes | None:
        box = self._mailboxes.get(mailbox)
        if box is not None:
            return box.pickup_hash
        pending = self._pending.get(mailbox)
        return None if pending is None else pending[0]

    @contextmanager
    def reserve(self, mailbox: bytes, pickup_hash: bytes) -> Iterator[None]:
        """Hold ``mailbox`` for ``pickup_hash`` while a send is authorized and stored.

        Raises :class:`MailboxConflict` at once if the tag is taken (stored or in flight)
        with another pickup hash, so the relay refuses before it spends the sender's
        authorization; while held, no other hash can take the tag, so :meth:`put` of this
        send cannot conflict."""
        with self._lock:
            owner = self._owner(mailbox)
            if owner is not None and not hmac.compare_digest(owner, pickup_hash):
                raise MailboxConflict("this mailbox tag is in use with another pickup capability")
            held = self._pending.get(mailbox, (pickup_hash, 0))[1]
            self._pending[mailbox] = (pickup_hash, held + 1)
        try:
            yield
        finally:
            with self._lock:
                owner_hash, held = self._pending[mailbox]
                if held <= 1:
                    del self._pending[mailbox]
                else:
                    self._pending[mailbox] = (owner_hash, held - 1)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def put(self, mailbox: bytes, pickup_hash: bytes, blob: bytes, digest: bytes, now: float, home: int | None = None) -> str:
        """Store a blob durably; raise :class:`MailboxConflict` for a tag owned by another
        hash, ``OSError`` if it cannot be written (then nothing of it is left). ``home``:
        the 96-bit tag of the send's home registry (federated relays)."""
        if not hmac.compare_digest(hashlib.sha256(blob).digest(), digest):
            raise ValueError("digest is not the SHA-256 of the blob")
        if home is not None and not 0 <= home < 1 << (8 * HOME_BYTES):
            raise ValueError("home must be a 96-bit registry tag")
        blob_id = secrets.token_hex(16)
        with self.reserve(mailbox, pickup_hash):
            self._write(blob_id, mailbox, pickup_hash, blob, digest, now, home=home)
            with self._lock:
                self._index(blob_id, mailbox, pickup_hash, digest, now, home=home)
        return blob_id

    def set_acceptance(self, blob_id: str, record_hash: bytes) -> None:
        with self._file_lock(blob_id):
            with self._lock:
                entry = self._blobs.get(blob_id)
                if entry is None:
                    return
                entry.acceptance = record_hash
                flags = entry.flags()
            try:
                self._set_header(blob_id, (_ACCEPTANCE_AT, record_hash), (_FLAGS_AT, bytes([flags])))
            except OSError as exc:  # the blob is stored; only the link to its record is at stake
                log.warning("blob store: acceptance link not written: %s", type(exc).__name__)

    # -------------------------------------------------------------- pickup and delete

    def _check(self, stored_hash: bytes, secret: bytes) -> None:
        if not hmac.compare_digest(stored_hash, capability_hash(secret)):
            raise WrongCapability("wrong pickup capability")

    def pickup(self, mailbox: bytes, secret: bytes) -> list[StoredBlob]:
        """The mailbox's blobs, oldest hour first and in random (id) order within an hour (an
        unknown mailbox is empty); marks them handed over."""
        with self._lock:
            box = self._mailboxes.get(mailbox)
            if box is None:
                return []
            self._check(box.pickup_hash, secret)
            ids = sorted(box.ids, key=lambda i: (self._blobs[i].received_at, i))
        out = []
        for blob_id in ids:
            with self._file_lock(blob_id):
                with self._lock:
                    entry = self._blobs.get(blob_id)
                if entry is None:
                    continue  # acknowledged (erased) since the listing above
                read = self._read(self._file(blob_id))
                if read is None:
                    raise OSError(f"blob file {blob_id} is unreadable")
                handed_over = entry.handed_over  # changes only under this file lock
                if not handed_over:
                    self._set_header(blob_id, (_FLAGS_AT, bytes([entry.flags() | _HANDED_OVER])))
                    with self._lock:
                        entry.handed_over = True
                out.append(StoredBlob(
                    blob_id, mailbox, read[2], entry.digest, entry.received_at, handed_over, entry.acceptance, entry.home
                ))
        return out

    def _erase(self, blob_ids: list[str], entries: list[_Entry]) -> None:
        """Erase the files of blobs already taken out of the index; put back any whose
        file could not be erased (so a failed delete does not hide a blob still on disk)."""
        failed: Exception | None = None
        for blob_id, entry in zip(blob_ids, entries):
            try:
                with self._file_lock(blob_id):
                    erase_file(self._file(blob_id))
            except OSError as exc:
                failed = exc
                with self._lock:
                    pickup_hash = self._mailboxes[entry.mailbox].pickup_hash if entry.mailbox in self._mailboxes else None
                    if pickup_hash is None:
                        read = self._read(self._file(blob_id))
                        if read is None:
                            continue
                        pickup_hash = read[1]
                    self._index(blob_id, entry.mailbox, pickup_hash, entry.digest, entry.received_at,
                                entry.handed_over, entry.acceptance, entry.home)
        if blob_ids:
            self._coarse_directory_time(time.time())
        if failed is not None:
            raise failed

    def _coarse_directory_time(self, when: float) -> None:
        """Set the directory's modification and access times back to the hour: each
        create, rename or unlink in it stamps the moment, to the nanosecond (the last
        blob's arrival or erasure). Its change time, which no program can set, keeps the
        moment of this call (docs/privacy.md)."""
        hour = coarse_time(when, self.resolution)
        try:
            os.utime(self.path, (hour, hour))
        except OSError:
            pass  # a privacy measure, not a condition of the write

    def delete(
        self, blob_id: str, secret: bytes, before_erase: Callable[[StoredBlob], object] | None = None
    ) -> StoredBlob | None:
        """Delete a blob whose mailbox opens with ``secret``; None if there is no such blob.
        When it returns, the blob's file is overwritten and gone. ``before_erase`` runs
        once the capability is checked and before any byte is erased (the relay queues its
        access evidence there: a crash after the erase must not lose the record)."""
        with self._lock:
            entry = self._blobs.get(blob_id)
            if entry is None:
                return None
            self._check(self._mailboxes[entry.mailbox].pickup_hash, secret)
            self._unindex(blob_id)
        removed = StoredBlob(
            blob_id, entry.mailbox, b"", entry.digest, entry.received_at, entry.handed_over, entry.acceptance, entry.home
        )
        if before_erase is not None:
            before_erase(removed)
        self._erase([blob_id], [entry])
        return removed

    def purge(self, before: float) -> int:
        """Delete blobs whose reception hour (resolution step) ended before ``before``
        (retention); erased when it returns."""
        with self._lock:
            ids = [i for i, e in self._blobs.items() if e.received_at + self.resolution <= before]
            entries = [self._unindex(i) for i in ids]
        self._erase(ids, entries)
        return len(ids)

    def count(self) -> int:
        with self._lock:
            return len(self._blobs)

    def exists(self, blob_id: str) -> bool:
        with self._lock:
            return blob_id in self._blobs
