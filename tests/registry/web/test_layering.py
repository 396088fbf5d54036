"""The web layer sits on the service, never the other way round: no module of the
service, its stores, the ledger, the evidence log or the error contract imports
``registry.web`` (an import cycle between them would come back through any of these)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3] / "registry"
BELOW_THE_WEB = ["service", "storage", "ledger", "evidence", "errors.py"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("part", BELOW_THE_WEB)
def test_no_import_of_the_web_layer(part: str) -> None:
    base = ROOT / part
    files = [base] if base.is_file() else sorted(base.rglob("*.py"))
    assert files
    offending = {
        str(f.relative_to(ROOT)): sorted(m for m in _imports(f) if m == "registry.web" or m.startswith("registry.web."))
        for f in files
    }
    assert {f: m for f, m in offending.items() if m} == {}
