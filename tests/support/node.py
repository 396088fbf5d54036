"""Whether node and the reference JavaScript libraries (``npm ci``) are installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def node_available() -> bool:
    return shutil.which("node") is not None and (ROOT / "node_modules").is_dir()


#: Skips a test that runs the JS reference libraries where they are not installed.
needs_node = pytest.mark.skipif(not node_available(), reason="node and node_modules are required")
