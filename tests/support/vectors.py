"""The recorded known answers in tests/vectors/ (most written by the generators in tests/js/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"


def load_vectors(file_name: str) -> Any:
    """The parsed JSON of ``tests/vectors/<file_name>``."""
    return json.loads((VECTORS_DIR / file_name).read_text("utf-8"))
