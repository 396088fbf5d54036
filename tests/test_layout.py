"""The house rules of the layout (README's layout table): no function over 80 lines in
``zk/`` or ``registry/``; ``zk/`` never imports ``registry/``; the subpackages of
``registry/`` import one another without a cycle (lazy imports inside functions count too).
The web layer's own rule (nothing below it imports it) is tests/registry/web/test_layering.py."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


def _sources(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    return files


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@pytest.mark.parametrize("package", ["zk", "registry"])
def test_no_function_over_80_lines(package: str) -> None:
    long = []
    for path in _sources(package):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_zk_never_imports_registry() -> None:
    offending = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if m == "registry" or m.startswith("registry."))
        for path in _sources("zk")
    }
    assert {f: m for f, m in offending.items() if m} == {}


def _subpackage_graph() -> dict[str, set[str]]:
    """registry's subpackages (and top-level modules) -> the ones they import."""
    graph: dict[str, set[str]] = {}
    for path in _sources("registry"):
        me = path.relative_to(ROOT / "registry").parts[0].removesuffix(".py")
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] == "registry" and len(parts) > 1 and parts[1] != me:
                graph.setdefault(me, set()).add(parts[1])
    return graph


def test_registry_subpackages_import_one_another_without_a_cycle() -> None:
    graph = _subpackage_graph()
    assert {"web", "service"} <= graph.keys()  # the graph is read, not empty
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    assert cycles == []
