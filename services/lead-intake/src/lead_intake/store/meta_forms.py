"""Meta lead forms mapped to our forms."""

from __future__ import annotations

from typing import Any

import asyncpg

from lead_intake.meta_forms import MetaForm, MetaFormIn

_COLUMNS = "meta_form_id, form_id, field_map, created_at, updated_at"


def _meta_form(row: Any) -> MetaForm:
    return MetaForm(
        meta_form_id=row["meta_form_id"],
        form_id=row["form_id"],
        field_map=row["field_map"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def get_meta_form(conn: asyncpg.Connection, meta_form_id: str) -> MetaForm | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM meta_forms WHERE meta_form_id = $1",  # noqa: S608
        meta_form_id,
    )
    return _meta_form(row) if row else None


async def get_meta_forms(conn: asyncpg.Connection, meta_form_ids: list[str]) -> dict[str, MetaForm]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM meta_forms WHERE meta_form_id = ANY($1::text[])",  # noqa: S608
        meta_form_ids,
    )
    return {r["meta_form_id"]: _meta_form(r) for r in rows}


async def list_meta_forms(
    conn: asyncpg.Connection, *, limit: int, after: str | None
) -> list[MetaForm]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM meta_forms "  # noqa: S608
        "WHERE $1::text IS NULL OR meta_form_id > $1 ORDER BY meta_form_id LIMIT $2",
        after,
        limit,
    )
    return [_meta_form(r) for r in rows]


async def save_meta_form(
    conn: asyncpg.Connection, meta_form_id: str, body: MetaFormIn
) -> tuple[MetaForm, bool]:
    """Create or replace; True when created."""
    row = await conn.fetchrow(
        f"""INSERT INTO meta_forms (meta_form_id, form_id, field_map) VALUES ($1, $2, $3)
            ON CONFLICT (meta_form_id) DO UPDATE SET form_id = excluded.form_id,
                field_map = excluded.field_map, updated_at = now()
            RETURNING {_COLUMNS}, (xmax = 0) AS created""",  # noqa: S608
        meta_form_id,
        body.form_id,
        body.field_map,
    )
    return _meta_form(row), bool(row["created"])


async def delete_meta_form(conn: asyncpg.Connection, meta_form_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM meta_forms WHERE meta_form_id = $1 RETURNING true", meta_form_id
    )
    return bool(deleted)
