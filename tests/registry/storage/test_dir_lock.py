"""One process per data directory (registry/storage/dir_lock.py): a real second process
holds the lock, is refused, and a SIGKILLed holder leaves nothing to clear by hand."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from registry.errors import RegistryError
from registry.storage.dir_lock import FILE_NAME, DataDirLock

_HOLDER = """
import sys, time
from pathlib import Path
from registry.storage.dir_lock import DataDirLock
lock = DataDirLock(Path(sys.argv[1]), "registry")
print("held", flush=True)
time.sleep(120)
"""


def _holder(data_dir: Path) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[3]  # the project, importable by the child
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(data_dir)], stdout=subprocess.PIPE, text=True, cwd=root)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        with pytest.raises(RegistryError) as refused:
            DataDirLock(tmp_path, "registry")
        assert refused.value.code == "data_dir_in_use"
        assert f"process {holder.pid}" in refused.value.message and str(tmp_path) in refused.value.message
        assert "--data-dir" in refused.value.message
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = DataDirLock(tmp_path, "relay")  # at once: the kernel dropped the dead process's lock
    try:
        assert lock.held
        assert (tmp_path / FILE_NAME).read_text().strip() == str(os.getpid())
    finally:
        lock.release()


def test_the_same_process_cannot_take_it_twice_and_can_after_release(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path, "registry")
    with pytest.raises(RegistryError, match="is in use by process"):
        DataDirLock(tmp_path, "registry")
    first.release()
    first.release()  # idempotent
    again = DataDirLock(tmp_path, "registry")
    again.release()
    assert not again.held


def test_deleting_the_pid_file_does_not_let_a_second_process_in(tmp_path: Path) -> None:
    """The lock is the directory's: an operator "clearing a stale lock" (or a restore that
    rewrites the file) does not make room for a second holder."""
    holder = _holder(tmp_path)
    try:
        (tmp_path / FILE_NAME).unlink()
        with pytest.raises(RegistryError) as refused:
            DataDirLock(tmp_path, "relay")
        assert "is in use by another process" in refused.value.message
    finally:
        holder.kill()
        holder.wait()


def test_the_pid_file_is_owner_only_and_never_followed_or_blocked_on(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / FILE_NAME).write_text("1\n")
    (old / FILE_NAME).chmod(0o644)
    DataDirLock(old, "registry").release()
    assert stat.S_IMODE((old / FILE_NAME).stat().st_mode) == 0o600

    # A symlink, a FIFO or a directory named zkid.lock: the directory is still locked,
    # the odd file untouched, and nothing leaks (the same process can lock again).
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    for kind in ("symlink", "fifo", "directory"):
        data = tmp_path / kind
        data.mkdir()
        path = data / FILE_NAME
        if kind == "symlink":
            path.symlink_to(target)
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.mkdir()
        lock = DataDirLock(data, "registry")
        with pytest.raises(RegistryError, match="is in use by another process"):
            DataDirLock(data, "registry")
        lock.release()
        DataDirLock(data, "registry").release()
    assert target.read_text() == "keep me\n"


def test_a_new_data_directory_is_owner_only(tmp_path: Path) -> None:
    """Keys live in it, and whoever can open it could hold its lock."""
    lock = DataDirLock(tmp_path / "new" / "data", "registry")
    lock.release()
    assert stat.S_IMODE((tmp_path / "new" / "data").stat().st_mode) == 0o700
