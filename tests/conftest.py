"""Shared fixtures. Fixtures for one area live in that area's own conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real-Anvil fixtures (one node per xdist worker), shared by ledger and registry tests.
pytest_plugins = ["tests.fixtures.anvil"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
