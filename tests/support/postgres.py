"""A real PostgreSQL 16 server for tests, started and stopped by the test itself.

The binaries come from the ``pgserver`` wheel (a dev dependency: ``make test`` installs
it), run directly so that a test can SIGKILL or restart the postmaster. PostgreSQL
refuses to run as root; as root the server runs as the system user ``zkidpg`` (created
with ``useradd`` on first use). It listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from tests.support.net import free_port

_USER = "zkidpg"


def _bin_dir() -> Path:
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _run_as() -> dict[str, Any]:
    """``subprocess`` keyword arguments that drop root for PostgreSQL."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _USER], check=True, capture_output=True)
        entry = pwd.getpwnam(_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _chown_tree(path: Path, kwargs: dict[str, Any]) -> None:
    if not kwargs:
        return
    path.chmod(0o700)
    shutil.chown(path, kwargs["user"], kwargs["group"])
    for parent in path.parents:  # the server must traverse to its data directory
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


class PostgresServer:
    """``initdb`` once in ``data_dir``, then :meth:`start`/:meth:`stop`/:meth:`kill`."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as = _run_as()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _chown_tree(self.data_dir, self._as)
            done = subprocess.run(
                [str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
                capture_output=True,
                **self._as,
            )
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        if self._as:
            shutil.chown(self.log_path, self._as["user"], self._as["group"])
        self.process = subprocess.Popen(
            [
                str(_bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", "",  # TCP on loopback only, no Unix socket
                "-c", "max_connections=300", "-c", "fsync=on", "-c", "synchronous_commit=on",
                "-c", "shared_buffers=64MB", "-c", "logging_collector=off",
            ],
            stdout=log, stderr=log, start_new_session=True, **self._as,
        )
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"postgres exited ({self.process.returncode}); see {self.log_path}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"postgres not ready in {timeout} s; see {self.log_path}") from None
                time.sleep(0.1)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: rolls back open transactions, checkpoints)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its children (a crash: recovery replays the WAL)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(30)
        self.process = None
        # Orphaned backends keep the shared memory; wait until they are gone.
        deadline = time.monotonic() + 30
        while (self.data_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
            try:
                pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
                os.kill(pid, 0)
                time.sleep(0.05)
            except (ValueError, ProcessLookupError, OSError, IndexError):
                break

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
