"""Activity events (topic funnel.activity-events), emitted by lead-intake."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from funnel_contracts import topics
from funnel_contracts.events.base import SEALED_VALUE, EventData, Utm
from funnel_contracts.events.lead import Sealed

# What people at the business log about a person (a call, a meeting, an event they came to, a
# note): offline touches, reported with the logging key's name as `actor`, and
# `properties.outcome` / `properties.text`.
OFFLINE_ACTIVITY_TYPES = ("call_logged", "meeting_held", "event_attended", "note_added")

KNOWN_ACTIVITY_TYPES = (
    "page_view", "pricing_viewed", "demo_requested", "trial_started", "cart_created",
    "cart_abandoned", "checkout_started", "purchase_completed", "refund_issued",
    "subscription_renewed", "subscription_cancelled", "review_written", "survey_answered",
    *OFFLINE_ACTIVITY_TYPES,
    # Reported by billing and sales systems; the default funnels move on them: a billing
    # period ending (subscription: back to re-evaluation), a lead ruled out (lost).
    "renewal_due", "disqualified",
)  # fmt: skip

PropertyValue = str | int | float | bool | None


class ActivityRecorded(EventData):
    """Something a lead did (a known type above, or a custom one), at its own event time."""

    event_type: ClassVar[str] = "funnel.activity.recorded.v1"
    topic: ClassVar[str] = topics.ACTIVITY_EVENTS

    activity_id: UUID
    activity_type: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    occurred_at: datetime
    recorded_at: datetime
    visitor_id: str | None = Field(
        default=None, description="Always null: a visitor id names a browser, so a person."
    )
    page_url: str | None = Field(
        default=None, description="The page's host and path only (no scheme, query, fragment)."
    )
    utm: Utm | None = None
    amount: Decimal | None = Field(default=None, description="purchase/refund amount")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    order_id: str | None = Field(default=None, max_length=200)
    properties: dict[str, PropertyValue] = Field(
        default_factory=dict,
        description="Numbers, booleans and one-word choices as reported; other text, a note's "
        f"`text` and integers of seven digits or more are {SEALED_VALUE!r}, whole only in "
        "`personal_data` (decision 0054).",
    )
    personal_data: Sealed | None = Field(
        default=None,
        description="The whole `properties` and the full `page_url`, sealed with the lead's data "
        "key for this lead and this event type (`funnel_contracts.sealed`); null when there is "
        "neither. Unreadable once the person is erased.",
    )
    actor: str | None = Field(
        default=None,
        max_length=200,
        description="The name of the API key that logged it (offline touches); None for what a "
        "person did on a site.",
    )
