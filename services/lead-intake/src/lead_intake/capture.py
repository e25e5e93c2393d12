"""Capturing a person: one transaction writes the lead, the submission and their events.

Shared by form posts, imports and (later) ad-platform adapters, so every way a lead arrives
follows the same identity rules and emits the same contract events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from funnel_contracts import LeadCaptured, LeadUpdated
from funnel_servicekit.outbox import enqueue
from lead_intake.activities import activity_event
from lead_intake.forms import Form
from lead_intake.store import activities, leads
from lead_intake.submission import Submission, SubmissionInvalid


@dataclass(frozen=True)
class Captured:
    lead_id: UUID
    submission_id: UUID | None
    new_lead: bool


@dataclass(frozen=True)
class Outbox:
    """Where events go: the service's schema and its CloudEvents source."""

    schema: str
    source: str


async def capture(
    conn: asyncpg.Connection,
    outbox: Outbox,
    form: Form,
    sub: Submission,
    *,
    source: str,
    captured_at: datetime,
    user_agent: str | None = None,
    ip_truncated: str | None = None,
    update_known: bool = True,
) -> Captured:
    """Inside the caller's transaction: the lead (new or known), its submission, its events.

    A new person emits funnel.lead.captured; a known one funnel.lead.updated (first touch
    kept, last touch updated). A visitor id links the visitor's anonymous activities, which
    are emitted now with their original event times.
    """
    lead = None
    if sub.email is not None:
        lead = await leads.create_lead(conn, sub, source=source, captured_at=captured_at)
    if lead is None and not update_known:
        known = await leads.lead_ids_by_email(conn, sub.email) if sub.email else []
        return Captured(known[0], None, False) if known else _needs_email()
    if lead is None:
        lead = await leads.update_known_lead(conn, sub)
    if lead is None:
        _needs_email()
    assert lead is not None
    submission_id = await leads.insert_submission(
        conn,
        lead.id,
        form.id,
        sub,
        source=source,
        user_agent=user_agent,
        ip_truncated=ip_truncated,
        captured_at=captured_at,
    )
    common = {
        "lead_id": lead.id,
        "submission_id": submission_id,
        "form_id": form.id,
        "funnel_id": form.funnel_id,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "phone": lead.phone,
        "landing_page": sub.touch.landing_page,
        "referrer": sub.touch.referrer,
        "source": source,
        "visitor_id": sub.visitor_id,
        "consent": sub.consent,
        "custom_fields": sub.custom_fields,
        "qualification": sub.qualification,
        "locale": sub.locale,
        "time_zone": sub.time_zone,
    }
    event: LeadCaptured | LeadUpdated
    if lead.created:
        assert lead.email is not None
        event = LeadCaptured(**common, email=lead.email, utm=sub.touch.utm, captured_at=captured_at)
    else:
        event = LeadUpdated(
            **common, email=lead.email, last_touch_utm=sub.touch.utm, updated_at=captured_at
        )
    await enqueue(conn, outbox.schema, event, source=outbox.source)
    if sub.visitor_id is not None:
        await link_visitor(conn, outbox, sub.visitor_id, lead.id)
    return Captured(lead.id, submission_id, lead.created)


async def link_visitor(
    conn: asyncpg.Connection, outbox: Outbox, visitor_id: str, lead_id: UUID
) -> int:
    """Link a visitor to its lead and emit what it did while anonymous; returns how many."""
    await leads.link_visitor(conn, visitor_id, lead_id)
    pending = await activities.claim_pending(conn, visitor_id, lead_id)
    for activity in pending:
        event = activity_event(
            activity_id=activity.id,
            lead_id=lead_id,
            activity_type=activity.activity_type,
            occurred_at=activity.occurred_at,
            recorded_at=activity.recorded_at,
            visitor_id=visitor_id,
            order_id=activity.order_id,
            details=activity.details,
        )
        await enqueue(conn, outbox.schema, event, source=outbox.source)
    return len(pending)


def _needs_email() -> Captured:
    # funnel.lead.captured.v1 requires an email: a phone-only person can only be matched.
    raise SubmissionInvalid(
        [{"field": "email", "message": "required for a person not known yet by phone"}]
    )
