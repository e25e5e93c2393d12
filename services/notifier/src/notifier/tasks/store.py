"""Sales tasks ("hot lead: call now"): one per task touch, listed, read and changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from notifier.tasks.models import STATUSES, Cursor, TaskFilter, TaskStatus

_COLUMNS = """t.id, t.lead_id, t.leak_id, t.playbook, t.title, t.funnel_id, t.stage, t.status,
    t.score, t.assignee, t.due_at, t.version, t.created_at, t.updated_at, s.temperature"""


async def create(
    conn: asyncpg.Connection,
    touch_id: UUID,
    lead_id: UUID,
    *,
    playbook: str,
    title: str,
    funnel_id: str | None,
    stage: str | None,
    leak_id: UUID | None = None,
) -> tuple[dict[str, Any], bool]:
    """The task of a touch (the touch id is the task id: a retried send makes no second),
    and whether this call made it, assigned to the lead's owner if it has one. None is made
    for an erased lead ({}, False). A team task (`leak_id`: the touch's lead_id is the
    leak's id) belongs to no person."""
    made = await conn.fetchval(
        """INSERT INTO tasks (id, lead_id, playbook, title, funnel_id, stage, score, assignee,
                              due_at, leak_id)
           SELECT $1, $2, $3, $4, $5, $6, s.score, s.owner, now(), $7
           FROM (SELECT $2::uuid AS lead_id) l LEFT JOIN lead_state s ON s.lead_id = l.lead_id
           WHERE NOT EXISTS (SELECT 1 FROM erased_leads WHERE lead_id = $2)
           ON CONFLICT (id) DO NOTHING
           RETURNING true""",
        touch_id,
        lead_id,
        playbook,
        title,
        funnel_id,
        stage,
        leak_id,
    )
    return await get(conn, touch_id) or {}, bool(made)


async def get(
    conn: asyncpg.Connection, task_id: UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS}
            FROM tasks t LEFT JOIN lead_state s ON s.lead_id = t.lead_id
            WHERE t.id = $1 {"FOR UPDATE OF t" if lock else ""}""",  # noqa: S608
        task_id,
    )
    return dict(row) if row else None


async def update(
    conn: asyncpg.Connection,
    task_id: UUID,
    *,
    status: str,
    assignee: str | None,
    due_at: datetime | None,
) -> dict[str, Any]:
    """The task's new values, its next version, now as its update time."""
    await conn.execute(
        """UPDATE tasks SET status = $2, assignee = $3, due_at = $4,
               version = version + 1, updated_at = clock_timestamp()
           WHERE id = $1""",
        task_id,
        status,
        assignee,
        due_at,
    )
    row = await get(conn, task_id)
    assert row is not None, "the task is locked by this transaction"
    return row


_STATUS_LITERALS: dict[TaskStatus, str] = {status: status for status in STATUSES}


async def listing(
    conn: asyncpg.Connection, filters: TaskFilter, *, after: Cursor | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` tasks, newest first, after the cursor's task. Only the filters given
    are in the query, so each shape is planned for itself (the cursor on the index)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.status is not None:
        # The status as a literal of the closed set, not a parameter: under the one generic
        # plan a connection keeps, `t.status = $1` cannot match the open tasks' partial
        # indexes, and a page of open tasks walked past every closed one (decision 0087).
        where.append(f"t.status = '{_STATUS_LITERALS[filters.status]}'")
    if filters.lead_id is not None:  # a person's tasks: never a team task keyed by a leak's id
        where.append(f"t.lead_id = {arg(filters.lead_id)} AND t.leak_id IS NULL")
    if filters.assignee is not None:
        where.append(f"t.assignee = {arg(filters.assignee)}")
    if filters.due_before is not None:
        where.append(f"t.due_at < {arg(filters.due_before)}")
    if after is not None:
        where.append(f"(t.created_at, t.id) < ({arg(after.created_at)}, {arg(after.task_id)})")
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS}
            FROM tasks t LEFT JOIN lead_state s ON s.lead_id = t.lead_id
            WHERE {" AND ".join(where) or "true"}
            ORDER BY t.created_at DESC, t.id DESC
            LIMIT {arg(limit)}""",  # noqa: S608 (only placeholders are interpolated)
        *args,
    )
    return [dict(r) for r in rows]
