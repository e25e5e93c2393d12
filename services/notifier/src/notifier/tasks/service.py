"""The sales tasks' use cases: open the task of a task touch, list tasks."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

import asyncpg

from funnel_servicekit.unit_of_work import Transactions
from notifier.tasks import store

Status = Literal["open", "done"]


async def open_task(
    tx: Transactions,
    touch_id: UUID,
    lead_id: UUID,
    *,
    playbook: str,
    title: str,
    funnel_id: str | None,
    stage: str | None,
) -> dict[str, Any]:
    """The task of a touch, made once (the touch id is the task id); {} for an erased lead."""
    async with tx() as uow:
        return await store.create(
            uow.conn,
            touch_id,
            lead_id,
            playbook=playbook,
            title=title,
            funnel_id=funnel_id,
            stage=stage,
        )


async def list_tasks(
    conn: asyncpg.Connection, *, status: Status | None, lead_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    """Tasks for the sales team, newest first."""
    return await store.listing(conn, status=status, lead_id=lead_id, limit=limit)
