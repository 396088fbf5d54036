"""docs/faults.md names the test that shows each fault: every one must exist (a test
renamed or removed without the matrix following fails here)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_test_named_in_the_fault_matrix_exists() -> None:
    text = (ROOT / "docs" / "faults.md").read_text()
    references = REFERENCE.findall(text)
    assert len(references) >= 20
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.is_file() or name not in _functions(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/faults.md names tests that do not exist: {missing}"
