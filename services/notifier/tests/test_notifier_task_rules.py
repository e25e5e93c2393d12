"""Sales tasks' pure rules: If-Match against a version, the list cursor, the change body."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from notifier.tasks.models import (
    Cursor,
    PreconditionFailed,
    TaskChange,
    etag,
    if_match_allows,
    public,
)


def test_if_match_lets_through_only_the_current_version() -> None:
    assert etag(3) == '"3"'
    assert if_match_allows(None, 3)
    assert if_match_allows("*", 3)
    assert if_match_allows('"3"', 3)
    assert if_match_allows('W/"3"', 3)
    assert if_match_allows('"1", "3"', 3)
    assert if_match_allows("3", 3)
    assert not if_match_allows('"2"', 3)
    assert not if_match_allows('"33"', 3)
    assert not if_match_allows("", 3)
    assert not if_match_allows("garbage", 3)


def test_the_412_body_says_what_is_current() -> None:
    body = PreconditionFailed('"1"', 4, "done").body("/v1/tasks/x")
    assert (body["status"], body["current_version"], body["current_status"]) == (412, 4, "done")
    assert body["errors"] == [{"field": "If-Match", "message": "not the current version"}]


def test_a_cursor_reads_back_and_anything_else_is_refused() -> None:
    cursor = Cursor(datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC), uuid4())
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "x", "WzEsMl0", "bm90IGpzb24", cursor.encode()[:-3]):
        with pytest.raises(ValueError, match="not a cursor"):
            Cursor.decode(bad)


def test_a_change_names_only_the_fields_sent_and_never_the_actor() -> None:
    change = TaskChange.model_validate({"assignee": None, "actor": "mallory"})
    assert change.changes() == {"assignee": None}
    assert TaskChange.model_validate({}).changes() == {}
    with pytest.raises(ValidationError):
        TaskChange.model_validate({"status": "finished"})
    with pytest.raises(ValidationError):
        TaskChange.model_validate({"due_at": "2026-12-24T09:00:00"})
    with pytest.raises(ValidationError):
        TaskChange.model_validate({"colour": "red"})


def test_a_team_task_about_a_leak_shows_no_person() -> None:
    leak, lead, now = uuid4(), uuid4(), datetime(2026, 9, 1, tzinfo=UTC)
    row = {
        "id": uuid4(), "lead_id": leak, "leak_id": leak, "title": "Funnel leak",
        "playbook": "leak-alert", "funnel_id": "f", "stage": "interest", "assignee": None,
        "status": "open", "due_at": now, "created_at": now, "updated_at": now, "version": 1,
        "score": None, "temperature": None,
    }  # fmt: skip
    team = public(row)
    assert (team["lead_id"], team["leak_id"]) == (None, leak)
    person = public({**row, "lead_id": lead, "leak_id": None, "playbook": "hot-lead"})
    assert (person["lead_id"], person["leak_id"]) == (lead, None)
