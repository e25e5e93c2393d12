"""Sales tasks' pure types and rules: the change a person asks for, the list cursor, the
version a caller expects (If-Match), and the answer when it is not the current one."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from funnel_contracts.events import TaskStatus
from funnel_servicekit.problems import Problem

__all__ = [
    "MAX_PAGE",
    "Cursor",
    "PreconditionFailed",
    "TaskChange",
    "TaskStatus",
    "etag",
    "if_match_allows",
    "public",
]

MAX_PAGE = 200
DEFAULT_PAGE = 50
STATUSES: tuple[TaskStatus, ...] = ("open", "done", "dismissed")


class TaskChange(BaseModel):
    """PATCH /v1/tasks/{id}: any of `status`, `assignee` (a key's name; null: nobody),
    `due_at` (null: no due time). Unknown fields are refused, except `actor`, which is
    ignored: the actor is always the calling key's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: TaskStatus | None = None
    assignee: str | None = Field(default=None, min_length=1, max_length=100)
    due_at: AwareDatetime | None = None
    actor: Any = Field(default=None, description="Ignored: the calling key is the actor.")

    def changes(self) -> dict[str, Any]:
        """The fields the request names, with their new values (actor never among them)."""
        return {
            k: getattr(self, k)
            for k in ("status", "assignee", "due_at")
            if k in self.model_fields_set
        }


class TaskFilter(BaseModel):
    """GET /v1/tasks' filters, each optional; the list holds the tasks that match them all."""

    model_config = ConfigDict(frozen=True)

    status: TaskStatus | None = None
    lead_id: UUID | None = Field(default=None, description="A person's tasks (not a team's).")
    assignee: str | None = Field(default=None, min_length=1, max_length=100)
    due_before: AwareDatetime | None = None


@dataclass(frozen=True)
class Cursor:
    """Where a page ended in the newest-first order: the last task's (created_at, id)."""

    created_at: datetime
    task_id: UUID

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), str(self.task_id)]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """The cursor `encode` made; ValueError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            created_at, task_id = json.loads(raw)
            cursor = cls(datetime.fromisoformat(created_at), UUID(task_id))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError("not a cursor this API gave") from exc
        if cursor.created_at.tzinfo is None:
            raise ValueError("not a cursor this API gave")
        return cursor


def etag(version: int) -> str:
    """The ETag of a task's version: `"3"`."""
    return f'"{version}"'


def if_match_allows(header: str | None, version: int) -> bool:
    """Whether an If-Match header lets a change of the task at `version` through: no header,
    `*`, or a list holding the version's tag (weak `W/"3"` and bare `3` accepted too)."""
    if header is None:
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == str(version):
            return True
    return False


class PreconditionFailed(Problem):
    """412: the caller changed a version of the task that is no longer the current one."""

    def __init__(self, expected: str, current_version: int, current_status: str) -> None:
        super().__init__(
            412,
            "Precondition failed",
            f"If-Match {expected} is not the task's current version {etag(current_version)}",
            type_="urn:funnel:problem:precondition-failed",
            errors=[{"field": "If-Match", "message": "not the current version"}],
            headers={"ETag": etag(current_version)},
        )
        self.current_version = current_version
        self.current_status = current_status

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return {
            **super().body(instance),
            "current_version": self.current_version,
            "current_status": self.current_status,
        }


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A task as the API shows it (and as it is pushed to the sales webhook). `id` repeats
    `task_id` for the callers of the first version of the list. A team task (a leak's) has
    `leak_id` and no `lead_id`: it is no person's."""
    leak_id = row.get("leak_id")
    return {
        "task_id": row["id"],
        "id": row["id"],
        "lead_id": None if leak_id is not None else row["lead_id"],
        "leak_id": leak_id,
        "title": row["title"],
        "playbook": row["playbook"],
        "funnel_id": row["funnel_id"],
        "stage": row["stage"],
        "assignee": row["assignee"],
        "status": row["status"],
        "due_at": row["due_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
        "score": row["score"],
        "temperature": row["temperature"],
    }
