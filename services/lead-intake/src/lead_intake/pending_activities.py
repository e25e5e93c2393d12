"""Activities that waited for their person, emitted once the person is known.

An anonymous visitor's page views wait for the visitor to fill a form; an activity naming an
email nobody has given yet waits for a lead with that email. Either way they are emitted
then, in the order they happened, with their own event times: nothing done before is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

from funnel_servicekit.outbox import enqueue
from lead_intake.activities import activity_event
from lead_intake.store import activities, leads

if TYPE_CHECKING:  # capture.py calls in here: only the type is needed
    from lead_intake.capture import Outbox


async def emit_waiting(
    conn: asyncpg.Connection,
    outbox: Outbox,
    lead_id: UUID,
    *,
    visitor_id: str | None,
    email: str | None,
) -> int:
    """Inside the caller's transaction: link the visitor, claim and emit; returns how many.

    `email` is given for a lead created just now (a known lead claimed its email's
    activities when it was created).
    """
    if visitor_id is not None:
        await leads.link_visitor(conn, visitor_id, lead_id)
    waiting = await activities.claim_pending(conn, lead_id, visitor_id=visitor_id, email=email)
    for activity in waiting:
        event = activity_event(
            activity_id=activity.id,
            lead_id=lead_id,
            activity_type=activity.activity_type,
            occurred_at=activity.occurred_at,
            recorded_at=activity.recorded_at,
            visitor_id=activity.visitor_id,
            order_id=activity.order_id,
            details=activity.details,
        )
        await enqueue(conn, outbox.schema, event, source=outbox.source)
    return len(waiting)
