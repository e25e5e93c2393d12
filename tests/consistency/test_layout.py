"""The layout's rules that import-linter cannot see: routes and consumers hold no SQL and
open no transaction (they translate; the service layer does the work)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGES = sorted(
    p
    for p in (ROOT / "services").glob("*/src/*/**/*.py")
    if p.stem in {"routes", "consumer", "worker"}
)
# What only a store (SQL) or a service (a transaction, a pool connection) may call.
FORBIDDEN_CALLS = {
    "acquire",
    "transaction",
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "copy_records_to_table",
}
SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "NOTIFY ")


def test_there_are_edges_to_check() -> None:
    assert len(EDGES) >= 12, EDGES


@pytest.mark.parametrize("path", EDGES, ids=lambda p: str(p.relative_to(ROOT / "services")))
def test_an_edge_module_holds_no_sql_and_opens_no_transaction(path: Path) -> None:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        call = getattr(node.func, "attr", None) if isinstance(node, ast.Call) else None
        if call in FORBIDDEN_CALLS:
            found.append(f"line {node.lineno}: .{call}(...)")  # type: ignore[attr-defined]
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and text.lstrip().upper().startswith(SQL_WORDS):
            found.append(f"line {node.lineno}: SQL {text[:40]!r}")  # type: ignore[attr-defined]
    assert not found, found
