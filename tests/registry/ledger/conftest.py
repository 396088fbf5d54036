"""Fixtures of the ledger tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.ledger.anvil import LocalLedger


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A local ledger's data directory (not created); its ledger is stopped after the test
    whether or not the test started one."""
    directory = tmp_path / "data"
    try:
        yield directory
    finally:
        LocalLedger(directory).down()
