"""The start-up lines of `zkid up|serve` name where the state lives: a replica on
PostgreSQL says so (its password hidden), instead of only naming a data directory that
holds none of its stores (found following README "Several replicas on PostgreSQL")."""

from __future__ import annotations

from pathlib import Path

from registry.cli.service_commands import storage_lines
from registry.service.settings import Settings


def test_sqlite_names_only_the_data_directory(tmp_path: Path) -> None:
    text = storage_lines(Settings(data_dir=tmp_path, region="eu-west"))
    assert text == f"data:     {tmp_path.resolve()}  region: eu-west"
    assert "database" not in text


def test_postgresql_names_the_shared_database_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://zkid:s3cret-pw@db.internal:5432/zkid"
    lines = storage_lines(Settings(data_dir=tmp_path, database_url=url)).splitlines()
    assert lines[0].startswith(f"data:     {tmp_path.resolve()}")
    assert lines[1].startswith("database: postgresql://zkid:***@db.internal:5432/zkid ")
    assert "replicas" in lines[1] and "/v1/health" in lines[1]
    assert "s3cret-pw" not in "\n".join(lines)


def test_explicit_sqlite_url_is_not_announced_as_a_database(tmp_path: Path) -> None:
    assert "database" not in storage_lines(Settings(data_dir=tmp_path, database_url="sqlite:"))
