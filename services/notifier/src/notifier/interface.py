"""notifier's wiring, as the README's tour draws it (tests/consistency checks it)."""

from funnel_contracts.topics import (
    ACTIVITY_EVENTS,
    LEAD_EVENTS,
    REPORT_EVENTS,
    STAGE_EVENTS,
    TOUCH_EVENTS,
)
from funnel_contracts.topology import HttpCall, ServiceInterface

INTERFACE = ServiceInterface(
    name="notifier",
    port=8003,
    schema="notifier",
    produces=(TOUCH_EVENTS,),
    consumes=(LEAD_EVENTS, ACTIVITY_EVENTS, STAGE_EVENTS, REPORT_EVENTS),
    calls=(
        HttpCall(
            "lead-intake",
            "GET /v1/leads/{lead_id}/data-key",
            "a person's data key, to read their sealed contact details",
            "FUNNEL_INTAKE_URL",
        ),
    ),
)
