"""Shared fixtures. Fixtures for one area live in that area's own conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Every test client (and every relay authorizing through a test registry) talks from
# loopback: one address for thousands of requests. The per-IP limits (registry/web/rate_limit.py)
# are exempted for it here, in-process and in the `zkid up` subprocesses (they inherit the
# environment); the tests of the limits turn this off (ip_limit_exempt=[] /
# ZKID_IP_LIMIT_EXEMPT="").
os.environ.setdefault("ZKID_IP_LIMIT_EXEMPT", "127.0.0.0/8,::1")
# Tests register a few commitments at a time and wait for them: no k-anonymity floor per
# batch (docs/privacy.md) unless a test sets one (tests/test_linking_attack.py does).
os.environ.setdefault("ZKID_BATCH_MIN_SIZE", "1")

# The real-Anvil fixtures (one node per xdist worker), shared by ledger and registry tests,
# and a real PostgreSQL server per worker for the storage backends (tests/fixtures/postgres.py).
pytest_plugins = ["tests.fixtures.anvil", "tests.fixtures.postgres"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
