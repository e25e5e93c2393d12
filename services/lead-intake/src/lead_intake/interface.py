"""lead-intake's wiring, as the README's tour draws it (tests/consistency checks it)."""

from funnel_contracts.topics import ACTIVITY_EVENTS, LEAD_EVENTS
from funnel_contracts.topology import HttpCall, ServiceInterface

INTERFACE = ServiceInterface(
    name="lead-intake",
    port=8001,
    schema="intake",
    produces=(LEAD_EVENTS, ACTIVITY_EVENTS),
    consumes=(),
    calls=(
        HttpCall(
            "stage-tracker",
            "GET /v1/funnels/{funnel_id}",
            "a saved form's funnel exists",
            "FUNNEL_TRACKER_URL",
        ),
    ),
)
