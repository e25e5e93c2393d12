"""Activity types the default funnels move on are ones intake documents and accepts."""

from funnel_contracts.events import KNOWN_ACTIVITY_TYPES
from lead_intake.activities.models import ActivityIn
from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.scoring.models.signals import (
    CAPTURED,
    CONSENT_GRANTED,
    TOUCH_CLICKED,
    TOUCH_OPENED,
    UNSUBSCRIBED,
    UPDATED,
)

# Signals the tracker makes from lead and touch events, not from activities.
NOT_ACTIVITIES = {CAPTURED, UPDATED, TOUCH_OPENED, TOUCH_CLICKED, UNSUBSCRIBED, CONSENT_GRANTED}


def _named_events() -> set[str]:
    named: set[str] = set()
    for funnel in default_funnels().values():
        for stage in funnel.stages:
            named |= {rule.match.event for rule in stage.enter_when if rule.match.event}
        named |= {rule.match.event for rule in funnel.lost_when if rule.match.event}
    return named


def test_every_activity_a_default_funnel_moves_on_is_a_known_type_intake_accepts() -> None:
    activities = _named_events() - NOT_ACTIVITIES

    assert "renewal_due" in activities  # the subscription cycle's way back to re-evaluation
    assert activities <= set(KNOWN_ACTIVITY_TYPES), activities - set(KNOWN_ACTIVITY_TYPES)
    for kind in sorted(activities):
        ActivityIn.model_validate(
            {"type": kind, "occurred_at": "2026-11-01T00:00:00Z", "email": "a@example.com"}
            | ({"amount": "1", "currency": "EUR", "order_id": "o"} if "purchase" in kind else {})
        )
