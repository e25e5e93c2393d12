"""What a store function sends PostgreSQL, and the plan each connection keeps for it: the
statements as sent (asyncpg's own type look-ups left out), planned generically (the kit's
`plan_cache_mode`, decision 0083), as JSON nodes to check for whole-table reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from funnel_servicekit.cli import migrate
from funnel_servicekit.db import connect
from funnel_servicekit.settings import ServiceSettings


@contextlib.asynccontextmanager
async def migrated(
    dsn: str, settings: ServiceSettings, migrations: Path
) -> AsyncIterator[asyncpg.Connection]:
    """A service's schema migrated on `dsn` (a fresh database), and a connection to it with
    the kit's session settings (its generic plans among them)."""
    await migrate(settings, migrations)
    conn = await connect(dsn, settings.db_schema)
    try:
        yield conn
    finally:
        await conn.close()


async def statements_sent(
    conn: asyncpg.Connection, call: Callable[[], Awaitable[Any]]
) -> list[str]:
    """The statements `call` sends on `conn`, in order."""
    return [query for query, _ in await sent_with_args(conn, call)]


async def generic_plan(
    conn: asyncpg.Connection, query: str, types: str, args: str, *, analyze: bool = False
) -> dict[str, Any]:
    """`query` prepared with parameters of `types`, its generic plan for `args` (SQL
    literals), run too with `analyze`: the plan's top node."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(
        f"PREPARE planned ({types}) AS {query}" if types else f"PREPARE planned AS {query}"
    )
    try:
        options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
        execute = f"EXECUTE planned ({args})" if args else "EXECUTE planned"
        raw = await conn.fetchval(f"EXPLAIN ({options}) {execute}")
    finally:
        await conn.execute("DEALLOCATE planned")
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan, its subplans and init plans included."""
    out = [plan]
    for child in plan.get("Plans", []):
        out += plan_nodes(child)
    return out


def whole_tables(plan: dict[str, Any]) -> list[str]:
    """The tables the plan reads whole (sequential scans)."""
    return [n["Relation Name"] for n in plan_nodes(plan) if n["Node Type"] == "Seq Scan"]


def rows_read(plan: dict[str, Any], table: str) -> int:
    """Rows of `table` an analyzed plan's scans read: those they kept and those their filter
    threw away."""
    return sum(
        (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
        for n in plan_nodes(plan)
        if n.get("Relation Name") == table
    )


def widest_step(plan: dict[str, Any]) -> int:
    """The most rows any node of an analyzed plan handled (over all its loops): a join that
    multiplies rows shows here even when every table is read once."""
    return max(n["Actual Rows"] * n["Actual Loops"] for n in plan_nodes(plan))


async def sent_with_args(
    conn: asyncpg.Connection, call: Callable[[], Awaitable[Any]]
) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements `call` sends on `conn`, in order, each with its arguments."""
    sent: list[tuple[str, tuple[Any, ...]]] = []

    def log(record: Any) -> None:
        sent.append((record.query, tuple(record.args or ())))

    conn.add_query_logger(log)
    try:
        await call()
        await asyncio.sleep(0)  # asyncpg calls its loggers soon after the query, not in it
    finally:
        conn.remove_query_logger(log)
    return [(q, a) for q, a in sent if not q.startswith("WITH RECURSIVE typeinfo_tree")]


def literal(value: Any) -> str:
    """A statement argument as an SQL literal (the kinds the plan tests send)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, list | tuple):  # an array literal: its type is the parameter's
        items = ",".join(
            "NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in value
        )
        return literal("{" + items + "}")
    return "'" + str(value).replace("'", "''") + "'"


async def generic_plan_as_sent(
    conn: asyncpg.Connection, query: str, args: tuple[Any, ...], *, analyze: bool = False
) -> dict[str, Any]:
    """`generic_plan` of a statement as it was sent: its parameter types left to PostgreSQL,
    its arguments as literals."""
    return await generic_plan(conn, query, "", ", ".join(literal(a) for a in args), analyze=analyze)
