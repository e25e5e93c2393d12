"""A real PostgreSQL server: fresh init, write, restart, data survives."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from funnel_devstack.ports import free_port
from funnel_devstack.postgres import PostgresServer
from funnel_devstack.processes import is_alive


@pytest.mark.integration
async def test_data_survives_restart(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg", free_port(), password="s3cret:/@x", fast=True)
    server.start()
    try:
        await server.wait_ready()
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT current_database()") == "funnel"
            await conn.execute("CREATE TABLE lead (id int PRIMARY KEY, email text NOT NULL)")
            await conn.execute("INSERT INTO lead VALUES (1, 'ada@example.com')")
        finally:
            await conn.close()
    finally:
        first_pid = server.pid
        server.stop()
    assert first_pid is not None
    assert not is_alive(first_pid)

    server.start()
    try:
        await server.wait_ready()
        assert server.postmaster_pid() == server.pid
        conn = await asyncpg.connect(server.dsn)
        try:
            row = await conn.fetchrow("SELECT id, email FROM lead")
        finally:
            await conn.close()
    finally:
        server.stop()
    assert row is not None
    assert tuple(row) == (1, "ada@example.com")


@pytest.mark.integration
async def test_kill_then_restart_recovers(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg", free_port())
    server.start()
    try:
        await server.wait_ready()
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute("CREATE TABLE t (v int)")
            await conn.execute("INSERT INTO t VALUES (42)")
        finally:
            await conn.close()
        server.kill()
        server.start()
        await server.wait_ready()
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT v FROM t") == 42
        finally:
            await conn.close()
    finally:
        server.stop()
