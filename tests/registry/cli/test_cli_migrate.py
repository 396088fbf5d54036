"""`zkid migrate` and `zkid serve` against a database (registry/cli/service_commands.py): exit codes, one-line errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from registry.service.facade import migrate_stores
from registry.service.settings import load_settings
from registry.storage.migrations import VERSION_TABLE
from tests.support.cli import run_zkid


def test_migrate_refuses_a_newer_schema_with_exit_1_and_one_line(tmp_path: Path) -> None:
    """docs/cli.md: a store migrated by a newer zkid is refused, exit 1, one line (the
    same as `--check`), not the usage error exit 2."""
    data = tmp_path / "data"
    migrate_stores(load_settings(data_dir=data))  # what a first `zkid migrate` leaves
    with sqlite3.connect(data / "nullifiers.sqlite") as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = 99")
    for extra in ([], ["--check"]):
        out = run_zkid("migrate", "--data-dir", str(data), *extra, timeout=120)
        assert out.returncode == 1, (extra, out.returncode, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "schema version 99" in lines[0], out.stderr
        assert "Traceback" not in out.stderr


def test_serve_against_an_unreachable_database_says_so_in_one_line_without_the_password(tmp_path: Path) -> None:
    from tests.support.net import free_port

    from registry.ledger.deploy import ContractRecord, Manifest, save_manifest

    record = ContractRecord("0x" + "11" * 20, "0" * 64, "0x" + "22" * 32, 1)
    names = ("ZkIdRegistry", "EvidenceAnchor", "SemaphoreVerifier", "PoseidonT3")
    save_manifest(tmp_path, Manifest(31337, "0x" + "33" * 32, "test", "0x" + "44" * 20, 1, "0x" + "55" * 32, 0, 3600, 0,
                                     contracts=dict.fromkeys(names, record)))
    manifest = tmp_path / "deployment.json"
    url = f"postgresql://zkid:S3cretPassw0rd@127.0.0.1:{free_port()}/zkid"
    out = run_zkid(
        "serve", "--data-dir", str(tmp_path / "data"), "--rpc-url", "http://127.0.0.1:9", "--manifest", str(manifest),
        "--database", url, timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "S3cretPassw0rd" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("zkid: error:")]
    assert len(errors) == 1 and "does not answer" in errors[0] and "zkid:***@127.0.0.1" in errors[0], out.stderr
    assert "Traceback" not in out.stderr


def test_migrate_check_creates_nothing_and_migrate_covers_the_connection_log(tmp_path: Path) -> None:
    """`--check` only reads: a fresh data directory stays empty (every store pending), and
    `zkid migrate` also brings the web app's connection log to this build's schema."""
    data = tmp_path / "data"
    settings = load_settings(data_dir=data)
    report = migrate_stores(settings, apply=False)
    assert report["access"][0] == 0 and all(found == 0 for found, _ in report.values())
    assert not data.exists() or not any(data.iterdir())
    migrate_stores(settings)
    assert (data / "access.log.sqlite").exists()
    after = migrate_stores(settings, apply=False)
    assert all(found == known for found, known in after.values()), after


def test_migrate_check_on_postgresql_creates_no_schema(tmp_path: Path, postgres_url: str) -> None:
    import psycopg

    def schemas() -> list[str]:
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'zkid%' ORDER BY nspname").fetchall()
        return [str(r[0]) for r in rows]

    settings = load_settings(data_dir=tmp_path / "data", database_url=postgres_url)
    report = migrate_stores(settings, apply=False)
    assert all(found == 0 for found, _ in report.values()), report
    assert schemas() == []  # --check only read
    migrate_stores(settings)
    assert "zkid_outbox" in schemas() and "zkid_nullifiers" in schemas()
    after = migrate_stores(settings, apply=False)
    assert all(found == known for found, known in after.values()), after


def test_migrate_does_not_run_under_a_running_registry(tmp_path: Path) -> None:
    from registry.errors import RegistryError
    from registry.storage.dir_lock import DataDirLock

    data = tmp_path / "data"
    data.mkdir()
    running = DataDirLock(data, "registry")  # what a running `zkid serve` holds
    try:
        settings = load_settings(data_dir=data)
        assert all(found == 0 for found, _ in migrate_stores(settings, apply=False).values())  # --check reads: allowed
        try:
            migrate_stores(settings)
        except RegistryError as exc:
            assert exc.code == "data_dir_in_use"
        else:
            raise AssertionError("migrate ran under a running registry")
        assert not (data / "outbox.sqlite").exists()
    finally:
        running.release()
