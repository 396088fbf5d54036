"""Versioned schemas, one mechanism for SQLite and PostgreSQL.

Each store lists its migrations: numbered steps of DDL written in SQLite's spelling
(:func:`registry.storage.database.postgres_ddl` maps them for PostgreSQL). The store's
database (file or schema) has a one-row table ``zkid_schema_version``; at open,
:func:`migrate` applies the steps above the recorded version in one transaction (both
databases run DDL transactionally, so a crash leaves the old version or the new one) and
refuses a database whose version is newer than this build knows: an older binary must
not write into a layout it does not understand (a replica left behind in a rolling
upgrade stops with one line instead).

Step 1 of every store is its layout as it stood when versioning began, in ``CREATE ...
IF NOT EXISTS`` form, so SQLite files from before (no version table) adopt version 1
without change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from registry.storage.database import Database, postgres_ddl

VERSION_TABLE = "zkid_schema_version"


@dataclass(frozen=True)
class Migration:
    """Step ``version``: its DDL statements (SQLite spelling)."""

    version: int
    statements: tuple[str, ...]


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer zkid than this one."""

    def __init__(self, where: str, found: int, known: int) -> None:
        super().__init__(
            f"{where} has schema version {found}, newer than this zkid knows ({known}): run the newer zkid, or restore a backup taken before the upgrade"
        )
        self.found = found
        self.known = known


def schema_version(db: Database) -> int:
    """The recorded version (0: none recorded)."""
    with db.connection() as conn:
        try:
            row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        except Exception:  # no table yet: a fresh database, or a file from before versions
            return 0
    return 0 if row is None else int(row[0])


def sqlite_schema_version(path: Path) -> int:
    """The recorded version of the SQLite store at ``path``, read through a read-only
    connection: no write, no checkpoint of a running registry's WAL (`zkid migrate --check`)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
    except sqlite3.OperationalError:  # no table yet: a file from before versions
        return 0
    finally:
        conn.close()
    return 0 if row is None else int(row[0])


def migrate(db: Database, migrations: Sequence[Migration]) -> int:
    """Bring ``db`` to the last of ``migrations``; return the version it was at.

    Raises :class:`SchemaTooNew` if the database is ahead of ``migrations``."""
    known = migrations[-1].version if migrations else 0
    if [m.version for m in migrations] != list(range(1, known + 1)):
        raise ValueError("migrations are numbered 1, 2, 3, ... without gaps")
    with db.transaction() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
        row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        found = 0 if row is None else int(row[0])
        if found > known:
            raise SchemaTooNew(db.describe, found, known)
        for step in migrations[found:]:
            for statement in step.statements:
                conn.execute(postgres_ddl(statement) if db.is_postgres else statement)
        if row is None:
            conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", (known,))
        elif found != known:
            conn.execute(f"UPDATE {VERSION_TABLE} SET version = ?", (known,))
    return found
