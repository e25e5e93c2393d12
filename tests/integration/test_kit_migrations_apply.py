"""Versioned migrations applied to a real PostgreSQL schema: once, in order, never edited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from funnel_devstack.stack import Stack
from funnel_servicekit import migrations
from funnel_servicekit.migrations import MigrationError
from tests.integration.kit_support import unique

pytestmark = pytest.mark.integration

KIT = ["kit/0001_outbox_inbox", "kit/0002_rate_limit_buckets"]


@pytest.fixture
async def schema(infra: Stack) -> AsyncIterator[str]:
    name = unique("it")
    yield name
    conn = await asyncpg.connect(infra.postgres.dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def conn(infra: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(infra.postgres.dsn)
    try:
        yield conn
    finally:
        await conn.close()


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def ledger(conn: asyncpg.Connection, schema: str) -> list[tuple[str, int, str]]:
    rows = await conn.fetch(
        f'SELECT component, version, name FROM "{schema}".schema_migrations'  # noqa: S608
        " ORDER BY component, version"
    )
    return [(r["component"], r["version"], r["name"]) for r in rows]


async def test_applying_twice_applies_nothing_the_second_time(
    conn: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    service = write(
        tmp_path / "m",
        {
            "0001_leads.sql": "CREATE TABLE leads (id uuid PRIMARY KEY);",
            "0002_counter.sql": "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);",
        },
    )
    assert await migrations.pending(conn, schema, service) == [
        "kit/0001",
        "kit/0002",
        "service/0001",
        "service/0002",
    ]
    first = await migrations.apply(conn, schema, service)
    assert first == [*KIT, "service/0001_leads", "service/0002_counter"]
    assert await migrations.apply(conn, schema, service) == []
    assert await migrations.pending(conn, schema, service) == []
    # The statements ran once, in the service's schema.
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".counter') == 1  # noqa: S608
    assert await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".outbox') is not None
    assert await ledger(conn, schema) == [
        ("kit", 1, "outbox_inbox"),
        ("kit", 2, "rate_limit_buckets"),
        ("service", 1, "leads"),
        ("service", 2, "counter"),
    ]
    # A new file later on is applied alone.
    write(service, {"0003_more.sql": "INSERT INTO counter VALUES (2);"})
    assert await migrations.apply(conn, schema, service) == ["service/0003_more"]
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".counter') == 2  # noqa: S608


async def test_an_edited_applied_migration_is_refused(
    conn: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    service = write(tmp_path / "m", {"0001_leads.sql": "CREATE TABLE leads (id uuid);"})
    await migrations.apply(conn, schema, service)
    write(
        service,
        {
            "0001_leads.sql": "CREATE TABLE leads (id uuid, email text);",
            "0002_after.sql": "CREATE TABLE after_edit (id int);",
        },
    )
    with pytest.raises(MigrationError, match="service 0001_leads was edited"):
        await migrations.apply(conn, schema, service)
    # Nothing after the edited file ran, and the lock was released (apply works once fixed).
    assert await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".after_edit') is None
    assert await ledger(conn, schema) == [
        ("kit", 1, "outbox_inbox"),
        ("kit", 2, "rate_limit_buckets"),
        ("service", 1, "leads"),
    ]
    write(service, {"0001_leads.sql": "CREATE TABLE leads (id uuid);"})
    assert await migrations.apply(conn, schema, service) == ["service/0002_after"]


async def test_a_failing_migration_is_rolled_back_and_not_recorded(
    conn: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    service = write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE ok (id int);",
            "0002_bad.sql": "CREATE TABLE half (id int); SELECT * FROM no_such_table;",
        },
    )
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrations.apply(conn, schema, service)
    assert await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".half') is None
    assert await migrations.pending(conn, schema, service) == ["service/0002"]


async def test_concurrent_applies_on_a_fresh_schema_apply_each_file_once(
    infra: Stack, schema: str, tmp_path: Path
) -> None:
    service = write(
        tmp_path / "m",
        {
            # Slow, and not idempotent: run twice, the second CREATE would fail.
            "0001_slow.sql": "SELECT pg_sleep(0.3); CREATE TABLE once (n int);",
            "0002_count.sql": "INSERT INTO once VALUES (1);",
        },
    )
    conns = [await asyncpg.connect(infra.postgres.dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(migrations.apply(c, schema, service) for c in conns), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        applied = [name for result in results for name in result]  # type: ignore[union-attr]
        assert sorted(applied) == sorted([*KIT, "service/0001_slow", "service/0002_count"])
        assert await conns[0].fetchval(f'SELECT count(*) FROM "{schema}".once') == 1  # noqa: S608
        assert len(await ledger(conns[0], schema)) == len(KIT) + 2
        # Every session released the migration lock.
        held = await conns[0].fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ANY($1::int[])",
            [c.get_server_pid() for c in conns],
        )
        assert held == 0
    finally:
        for c in conns:
            await c.close()
