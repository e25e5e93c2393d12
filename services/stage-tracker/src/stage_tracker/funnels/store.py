"""Funnel definitions in PostgreSQL: drafts, published versions (never changed once published)."""

from __future__ import annotations

from typing import Any

import asyncpg

from stage_tracker.funnels.models.defaults import DEFAULT_IDS, default_source

_COLUMNS = "funnel_id, version, status, format, source, created_by, created_at, published_at"


async def get(conn: asyncpg.Connection, funnel_id: str, version: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM funnel_definitions WHERE funnel_id = $1 AND version = $2",  # noqa: S608
        funnel_id,
        version,
    )
    if row is not None:
        return dict(row)
    if funnel_id in DEFAULT_IDS and version == 1:
        return _builtin(funnel_id)
    return None


def _builtin(funnel_id: str) -> dict[str, Any]:
    return {
        "funnel_id": funnel_id,
        "version": 1,
        "status": "published",
        "format": "yaml",
        "source": default_source(funnel_id),
        "created_by": "built-in",
        "created_at": None,
        "published_at": None,
    }


async def versions(conn: asyncpg.Connection, funnel_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM funnel_definitions WHERE funnel_id = $1 ORDER BY version",  # noqa: S608
        funnel_id,
    )
    found = [dict(r) for r in rows]
    if funnel_id in DEFAULT_IDS and all(r["version"] != 1 for r in found):
        found.insert(0, _builtin(funnel_id))
    return found


async def funnel_ids(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT funnel_id FROM funnel_definitions")
    return sorted({*DEFAULT_IDS, *(r["funnel_id"] for r in rows)})


async def latest_published_version(conn: asyncpg.Connection, funnel_id: str) -> int | None:
    version = await conn.fetchval(
        "SELECT max(version) FROM funnel_definitions WHERE funnel_id = $1 AND status = 'published'",
        funnel_id,
    )
    if version is None and funnel_id in DEFAULT_IDS:
        return 1
    return int(version) if version is not None else None


async def published_versions(conn: asyncpg.Connection) -> dict[str, list[tuple[int, Any]]]:
    """Every funnel's published versions with when each was published (None: built in)."""
    rows = await conn.fetch(
        "SELECT funnel_id, version, published_at FROM funnel_definitions"
        " WHERE status = 'published' ORDER BY funnel_id, version"
    )
    found: dict[str, list[tuple[int, Any]]] = {f: [(1, None)] for f in DEFAULT_IDS}
    for r in rows:
        versions = found.setdefault(r["funnel_id"], [])
        versions[:] = [v for v in versions if v[0] != r["version"]]
        versions.append((r["version"], r["published_at"]))
    return found


async def create_draft(
    conn: asyncpg.Connection, funnel_id: str, source: str, fmt: str, created_by: str
) -> int:
    """A new draft with the next version number (the funnel's versions are locked meanwhile)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"funnel:{funnel_id}")
    top = await conn.fetchval(
        "SELECT max(version) FROM funnel_definitions WHERE funnel_id = $1", funnel_id
    )
    version = max(int(top or 0), 1 if funnel_id in DEFAULT_IDS else 0) + 1
    await conn.execute(
        """INSERT INTO funnel_definitions (funnel_id, version, status, format, source, created_by)
           VALUES ($1, $2, 'draft', $3, $4, $5)""",
        funnel_id,
        version,
        fmt,
        source,
        created_by,
    )
    return version


async def update_draft(
    conn: asyncpg.Connection, funnel_id: str, version: int, source: str, fmt: str
) -> bool:
    """Replace a draft's text; False when it is not a draft (published ones never change)."""
    done = await conn.execute(
        """UPDATE funnel_definitions SET source = $3, format = $4
           WHERE funnel_id = $1 AND version = $2 AND status = 'draft'""",
        funnel_id,
        version,
        source,
        fmt,
    )
    return bool(done.endswith(" 1"))


async def publish(conn: asyncpg.Connection, funnel_id: str, version: int) -> bool:
    done = await conn.execute(
        """UPDATE funnel_definitions SET status = 'published', published_at = now()
           WHERE funnel_id = $1 AND version = $2 AND status = 'draft'""",
        funnel_id,
        version,
    )
    return bool(done.endswith(" 1"))
