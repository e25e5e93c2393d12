"""The sales tasks' use cases: open the task of a task touch, list, read and change tasks.

Every task's life is on funnel.touch-events as `funnel.task.updated.v1`: version 1 (open, no
actor) when a playbook makes it, then one per change a person makes (the calling key's name as
actor), each written to the outbox in the unit of work of the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from funnel_contracts import TaskUpdated
from funnel_servicekit.problems import invalid, not_found
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from notifier.tasks import store
from notifier.tasks.models import (
    Cursor,
    PreconditionFailed,
    TaskFilter,
    if_match_allows,
    public,
)

# The task's own columns the event carries under the same names.
_EVENT_COLUMNS = ("lead_id", "title", "status", "assignee", "due_at", "playbook", "version")


def _updated(task: dict[str, Any], actor: str | None) -> TaskUpdated:
    return TaskUpdated(
        task_id=task["id"],
        actor=actor,
        updated_at=task["updated_at"],
        leak_id=task.get("leak_id"),
        **{column: task[column] for column in _EVENT_COLUMNS},
    )


async def open_task(
    tx: Transactions,
    touch_id: UUID,
    lead_id: UUID,
    *,
    playbook: str,
    title: str,
    funnel_id: str | None,
    stage: str | None,
    leak_id: UUID | None = None,
) -> dict[str, Any]:
    """The task of a touch, made once (the touch id is the task id); {} for an erased lead.
    The first time, `funnel.task.updated.v1` (open, version 1) goes out with it. With
    `leak_id`, the team's task about that leak (no person's)."""
    async with tx() as uow:
        task, made = await store.create(
            uow.conn,
            touch_id,
            lead_id,
            playbook=playbook,
            title=title,
            funnel_id=funnel_id,
            stage=stage,
            leak_id=leak_id,
        )
        if made:
            await uow.emit(_updated(task, None))
    return public(task) if task else {}


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_after: str | None


async def list_tasks(
    conn: asyncpg.Connection, filters: TaskFilter, *, after: Cursor | None = None, limit: int
) -> Page:
    """One page of tasks, newest first; `next_after` names the next page (None: the last)."""
    rows = await store.listing(conn, filters, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_after = Cursor(rows[-1]["created_at"], rows[-1]["id"]).encode() if more else None
    return Page([public(r) for r in rows], next_after)


async def get_task(conn: asyncpg.Connection, task_id: UUID) -> dict[str, Any]:
    task = await store.get(conn, task_id)
    if task is None:
        raise not_found("task", "task_id", str(task_id))
    return public(task)


@dataclass(frozen=True)
class Change:
    """What a person changes on a task: only the fields named in `values`."""

    task_id: UUID
    values: dict[str, Any]
    actor: str
    if_match: str | None = None
    # Who a task may be handed to: the names of the configured API keys.
    assignees: frozenset[str] = frozenset()


async def change_task(tx: Transactions, change: Change) -> dict[str, Any]:
    """Apply a person's change: 404 unknown task, 412 (nothing written) when If-Match names
    another version. A change that changes nothing keeps the version and emits nothing."""
    if not change.values:
        raise invalid("body", "name at least one of status, assignee, due_at")
    assignee = change.values.get("assignee")
    if assignee is not None and assignee not in change.assignees | {change.actor}:
        raise invalid("assignee", f"{assignee!r} is not the name of an API key")
    if "status" in change.values and change.values["status"] is None:
        raise invalid("status", "must be one of open, done, dismissed")

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        task = await store.get(uow.conn, change.task_id, lock=True)
        if task is None:
            raise not_found("task", "task_id", str(change.task_id))
        if not if_match_allows(change.if_match, task["version"]):
            raise PreconditionFailed(str(change.if_match), task["version"], task["status"])
        new = {k: change.values.get(k, task[k]) for k in ("status", "assignee", "due_at")}
        if all(new[k] == task[k] for k in new):
            return public(task)
        updated = await store.update(uow.conn, change.task_id, **new)
        await uow.emit(_updated(updated, change.actor))
        return public(updated)

    return await tx.run(work)
