"""A person's timeline: the item each event makes, and the cursor of a page (pure).

An item is keyed by what its event is about (a submission, an activity, a touch, a task's
version, a move), never by the envelope: the same event delivered twice or replayed by a
rebuild makes the same item, and items order by their event time, then by that key, whatever
the order the events arrived in.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadOwnerChanged,
    StageChanged,
    TaskUpdated,
    TouchClicked,
    TouchOpened,
    TouchSent,
    Utm,
)
from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES
from funnel_contracts.lead_reader import lead_details

DEFAULT_LIMIT, MAX_LIMIT = 50, 200

# Every kind of item, in the order the README lists them.
KINDS = (
    "lead_captured",
    "lead_updated",
    "activity",
    "stage_changed",
    "touch_sent",
    "touch_opened",
    "touch_clicked",
    "task",
    *OFFLINE_ACTIVITY_TYPES,  # call_logged, meeting_held, event_attended, note_added
    "owner_changed",
)
TOUCH_RESPONSES = ("touch_opened", "touch_clicked")


def utc(moment: datetime) -> datetime:
    """Events carry aware times; a naive one is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Item:
    lead_id: UUID
    at: datetime
    key: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    # Opens and clicks: the touch whose send tells their playbook and channel.
    touch_id: UUID | None = None


def with_sends_told(items: list[Item]) -> list[Item]:
    """`items` with each open and click whose touch's send is among them (the same lead's)
    given that send's playbook and channel; the store gives the others theirs from the sends
    it holds, and gives a send's to the opens and clicks it holds (`store.write_batch`)."""
    sends = {(i.lead_id, i.key): i for i in items if i.kind == "touch_sent"}
    if not sends:
        return items
    out = []
    for item in items:
        if item.touch_id is not None and item.fields.get("playbook") is None:
            send = sends.get((item.lead_id, f"touch:{item.touch_id}:sent"))
            if send is not None:
                told = {k: send.fields.get(k) for k in ("playbook", "channel")}
                item = replace(item, fields={**item.fields, **told})
        out.append(item)
    return out


def item_of(event: EventData) -> Item | None:
    """The timeline item an event makes; None for events that make none (an erasure)."""
    details = lead_details(event)
    if details is not None:
        key = (
            f"submission:{details.submission_id}"
            if details.submission_id is not None
            else f"update:{utc(details.at).isoformat()}:{details.source}"
        )
        return Item(
            event.lead_id,
            utc(details.at),
            key,
            "lead_captured" if details.new else "lead_updated",
            {
                "submission_id": _str(details.submission_id),
                "form": details.form_id,
                "source": details.source,
                "funnel_id": details.funnel_id,
                "utm": _utm(details.utm),
                "landing_page": _path_only(details.landing_page),
                "referrer": _path_only(details.referrer),
            },
        )
    if isinstance(event, ActivityRecorded):
        return _activity(event)
    if isinstance(event, StageChanged):
        at = utc(event.changed_at)
        return Item(
            event.lead_id,
            at,
            f"stage:{event.funnel_id}:{event.to_stage}:{at.isoformat()}",
            "stage_changed",
            {
                "funnel_id": event.funnel_id,
                "funnel_version": event.funnel_version,
                "from_stage": event.from_stage,
                "to_stage": event.to_stage,
                "reason": event.reason,
                "cause_event_type": event.cause_event_type,
                "actor": event.actor,
                "owner": event.owner,
            },
        )
    if isinstance(event, TouchSent):
        return Item(
            event.lead_id,
            utc(event.sent_at),
            f"touch:{event.touch_id}:sent",
            "touch_sent",
            {
                "touch_id": str(event.touch_id),
                "playbook": event.playbook,
                "channel": event.channel,
                "template": event.template,
                "funnel_id": event.funnel_id,
                "stage": event.stage,
            },
        )
    if isinstance(event, TouchOpened):
        at = utc(event.opened_at)
        return Item(
            event.lead_id,
            at,
            f"touch:{event.touch_id}:opened:{at.isoformat()}",
            "touch_opened",
            {"touch_id": str(event.touch_id), "playbook": None, "channel": None},
            touch_id=event.touch_id,
        )
    if isinstance(event, TouchClicked):
        at = utc(event.clicked_at)
        url = _path_only(event.url)
        return Item(
            event.lead_id,
            at,
            f"touch:{event.touch_id}:clicked:{at.isoformat()}:{url}",
            "touch_clicked",
            {"touch_id": str(event.touch_id), "url": url, "playbook": None, "channel": None},
            touch_id=event.touch_id,
        )
    if isinstance(event, TaskUpdated):
        if event.leak_id is not None:
            return None  # the team's task about a funnel leak: no person's timeline
        return Item(
            event.lead_id,
            utc(event.updated_at),
            f"task:{event.task_id}:{event.version:09d}",
            "task",
            {
                "task_id": str(event.task_id),
                "title": event.title,
                "status": event.status,
                "assignee": event.assignee,
                "due_at": event.due_at.isoformat() if event.due_at else None,
                "playbook": event.playbook,
                "version": event.version,
                "actor": event.actor,
            },
        )
    if isinstance(event, LeadOwnerChanged):
        at = utc(event.changed_at)
        return Item(
            event.lead_id,
            at,
            f"owner:{event.funnel_id}:{at.isoformat()}:{event.owner or ''}",
            "owner_changed",
            {
                "funnel_id": event.funnel_id,
                "owner": event.owner,
                "previous_owner": event.previous_owner,
                "actor": event.actor,
            },
        )
    return None


def _activity(event: ActivityRecorded) -> Item:
    at = utc(event.occurred_at)
    key = f"activity:{event.activity_id}"
    if event.activity_type in OFFLINE_ACTIVITY_TYPES:
        props = event.properties
        return Item(
            event.lead_id,
            at,
            key,
            event.activity_type,
            {
                "activity_id": str(event.activity_id),
                "outcome": _text(props.get("outcome")),
                "text": _text(props.get("text")),
                "actor": event.actor,
            },
        )
    return Item(
        event.lead_id,
        at,
        key,
        "activity",
        {
            "activity_id": str(event.activity_id),
            "activity_type": event.activity_type,
            "page_path": _path_only(event.page_url),
            "amount": None if event.amount is None else str(event.amount),
            "currency": event.currency,
            "order_id": event.order_id,
        },
    )


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _utm(utm: Utm) -> dict[str, str | None]:
    return {
        "source": utm.source,
        "medium": utm.medium,
        "campaign": utm.campaign,
        "term": utm.term,
        "content": utm.content,
    }


def _path_only(url: str | None) -> str | None:
    """A page's host and path, without its query or fragment (where a site may put an email
    address or a token): what the timeline needs, and no more than that."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}" if parts.netloc else parts.path or None


# The cursor of a page: the last item's (at, key), opaque to callers.


class CursorError(ValueError):
    pass


@dataclass(frozen=True)
class Before:
    """Items strictly before this (at, key); key None: strictly before the instant."""

    at: datetime
    key: str | None = None


def cursor(at: datetime, key: str) -> str:
    raw = f"{utc(at).isoformat()}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_before(value: str) -> Before:
    """An opaque cursor (a page's `next_before`), or an ISO 8601 instant with its offset."""
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        instant = None
    if instant is not None:
        if instant.tzinfo is None:
            raise CursorError("an instant needs its UTC offset, e.g. 2026-09-01T12:00:00Z")
        return Before(utc(instant))
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        at_text, sep, key = raw.partition("|")
        if not sep or not key:
            raise ValueError(raw)
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError(at_text)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise CursorError("not a cursor from next_before, nor an ISO 8601 instant") from exc
    return Before(utc(at), key)
