"""A lead delivered by an ad platform or webhook, captured once however often it arrives."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from lead_intake.capture import Captured, Outbox, capture
from lead_intake.forms import Form
from lead_intake.platforms import PlatformLead
from lead_intake.store import platform_leads
from lead_intake.submission import parse_submission


async def capture_platform_lead(
    conn: asyncpg.Connection,
    outbox: Outbox,
    form: Form,
    platform: str,
    lead: PlatformLead,
    *,
    now: datetime,
) -> Captured:
    """Inside the caller's transaction; a redelivery returns the first capture's lead.

    Raises SubmissionInvalid when the mapped values break the form's rules.
    """
    # Two deliveries of one lead at once: the second waits here, then finds it seen.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))", f"{platform}:{lead.external_id}"
    )
    known = await platform_leads.seen(conn, platform, lead.external_id)
    if known is not None:
        return Captured(known, None, False)
    sub = parse_submission(lead.values, form.settings, now=now)
    captured = await capture(conn, outbox, form, sub, source=platform, captured_at=now)
    await platform_leads.mark_seen(conn, platform, lead.external_id, captured.lead_id)
    return captured
