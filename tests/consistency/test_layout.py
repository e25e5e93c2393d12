"""The layout's rules that import-linter cannot see: routes and consumers hold no SQL and
open no transaction (they translate; the service layer does the work)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from funnel_servicekit.auth import api_routes

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


def _apps() -> list[tuple[str, Any]]:
    from lead_intake.app import create_app as intake
    from notifier.app import create_app as notifier
    from reporting.app import create_app as reporting
    from stage_tracker.app import create_app as tracker

    return [("lead-intake", intake()), ("stage-tracker", tracker()), ("notifier", notifier()),
            ("reporting", reporting())]  # fmt: skip


def test_no_route_or_dependency_runs_in_the_threadpool() -> None:
    """A plain `def` endpoint or dependency makes FastAPI hop to a worker thread on every
    request (it halved intake's throughput once): every one must be `async def`."""
    sync = []
    for name, app in _apps():
        routes = api_routes(app)
        assert len(routes) > 5, name
        for route in routes:
            stack = [route.dependant]
            while stack:
                node = stack.pop()
                if node is None:
                    continue
                call = node.call
                if call is not None and not (
                    inspect.iscoroutinefunction(call)
                    or inspect.isasyncgenfunction(call)
                    or (callable(call) and inspect.iscoroutinefunction(type(call).__call__))
                ):
                    sync.append(f"{name} {getattr(route, 'path', '?')}: {call!r}")
                stack += node.dependencies
    assert not sync, sync
