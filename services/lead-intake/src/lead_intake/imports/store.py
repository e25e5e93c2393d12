"""Imports, their staged rows and the errors of their bad rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from funnel_servicekit.db import wrote_a_row
from lead_intake.imports.models import BatchCounts, ImportState
from lead_intake.imports.models.rows import RowError

# The errors GET /v1/imports/{id} lists (all of them stay counted in `failed`).
ERRORS_LISTED = 1000


async def find(conn: asyncpg.Connection, idempotency_key: str | None, sha256: bytes) -> UUID | None:
    """The import this request repeats: the same Idempotency-Key, or the same content."""
    found: UUID | None = await conn.fetchval(
        """SELECT id FROM imports WHERE content_sha256 = $2 OR idempotency_key = $1
           ORDER BY (idempotency_key = $1) DESC NULLS LAST LIMIT 1""",
        idempotency_key,
        sha256,
    )
    return found


_CREATE = """
    INSERT INTO imports (id, form_id, on_existing, idempotency_key, content_sha256,
        rows, created_by)
    VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT DO NOTHING RETURNING true
"""


async def create(
    conn: asyncpg.Connection,
    import_id: UUID,
    form_id: str,
    on_existing: str,
    idempotency_key: str | None,
    sha256: bytes,
    created_by: str | None,
) -> bool:
    """A new import (no rows yet); False when one with this key or content exists already."""
    return await wrote_a_row(
        conn, _CREATE, import_id, form_id, on_existing, idempotency_key, sha256, created_by
    )


async def stage_rows(
    conn: asyncpg.Connection, import_id: UUID, rows: Sequence[tuple[int, dict[str, str]]]
) -> None:
    """One chunk of rows, in one statement."""
    await conn.execute(
        """INSERT INTO import_rows (import_id, row_no, data)
           SELECT $1, n, d::jsonb FROM unnest($2::int[], $3::text[]) AS t(n, d)""",
        import_id,
        [n for n, _ in rows],
        [json.dumps(data) for _, data in rows],
    )


async def set_rows(conn: asyncpg.Connection, import_id: UUID, rows: int) -> None:
    await conn.execute("UPDATE imports SET rows = $2 WHERE id = $1", import_id, rows)


# An import small enough to be done in its request is the request's: the runner takes it
# only when that request has clearly died (it was made longer ago than this).
INLINE_ABANDONED_AFTER = "2 minutes"


async def claim(
    conn: asyncpg.Connection,
    import_id: UUID | None = None,
    *,
    lock: bool,
    inline_rows: int | None = None,
) -> asyncpg.Record | None:
    """The oldest import with rows waiting (or `import_id`, if it has); with `lock`, locked
    for this transaction (another runner skips it). With `inline_rows` (the runner's look),
    an import of at most that many rows is left to the request that imports it, unless that
    request died long ago: the runner taking it meanwhile would leave the request's answer
    without its lead ids."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT id, form_id, on_existing, rows, next_row, created_at FROM imports
            WHERE status <> 'done' AND ($1::uuid IS NULL OR id = $1)
              AND ($2::int IS NULL OR rows > $2
                   OR created_at < now() - '{INLINE_ABANDONED_AFTER}'::interval)
            ORDER BY created_at LIMIT 1 {"FOR UPDATE SKIP LOCKED" if lock else ""}""",  # noqa: S608
        import_id,
        inline_rows,
    )
    return row


async def rows_from(
    conn: asyncpg.Connection, import_id: UUID, first: int, limit: int
) -> list[tuple[int, dict[str, str]]]:
    rows = await conn.fetch(
        """SELECT row_no, data FROM import_rows WHERE import_id = $1 AND row_no >= $2
           ORDER BY row_no LIMIT $3""",
        import_id,
        first,
        limit,
    )
    return [(r["row_no"], dict(r["data"])) for r in rows]


async def record_batch(
    conn: asyncpg.Connection,
    import_id: UUID,
    next_row: int,
    counts: BatchCounts,
    errors: Iterable[RowError],
) -> None:
    """A batch done: its counts, its errors, its rows gone; the import done after its last.
    One statement (one round trip of the batch's transaction)."""
    found = list(errors)
    await conn.execute(
        """WITH bad AS (
               INSERT INTO import_errors (import_id, row_no, field, message)
               SELECT $1, r, f, m FROM unnest($7::int[], $8::text[], $9::text[]) AS e(r, f, m)),
           gone AS (
               DELETE FROM import_rows WHERE import_id = $1 AND row_no < $2)
           UPDATE imports SET next_row = $2, imported = imported + $3,
               existing = existing + $4, updated = updated + $5, failed = failed + $6,
               status = CASE WHEN $2 > rows THEN 'done' ELSE 'running' END,
               finished_at = CASE WHEN $2 > rows THEN now() END
           WHERE id = $1""",
        import_id,
        next_row,
        counts.imported,
        counts.existing,
        counts.updated,
        counts.failed,
        [e.row for e in found],
        [e.field for e in found],
        [e.message[:1000] for e in found],
    )


async def state(conn: asyncpg.Connection, import_id: UUID) -> ImportState | None:
    row = await conn.fetchrow(
        """SELECT id, form_id, on_existing, status, rows, imported, existing, updated, failed,
               created_at, finished_at FROM imports WHERE id = $1""",
        import_id,
    )
    if row is None:
        return None
    errors = await conn.fetch(
        """SELECT row_no, field, message FROM import_errors WHERE import_id = $1
           ORDER BY row_no, field LIMIT $2""",
        import_id,
        ERRORS_LISTED,
    )
    data: dict[str, Any] = dict(row)
    data["errors"] = [
        {"row": e["row_no"], "field": e["field"], "message": e["message"]} for e in errors
    ]
    return ImportState(**data)


async def waiting(conn: asyncpg.Connection) -> bool:
    """Whether any import has rows waiting."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM imports WHERE status <> 'done')"))
