"""stage-tracker's wiring, as the README's tour draws it (tests/consistency checks it)."""

from funnel_contracts.topics import (
    ACTIVITY_EVENTS,
    LEAD_EVENTS,
    STAGE_COMMANDS,
    STAGE_EVENTS,
    TOUCH_EVENTS,
)
from funnel_contracts.topology import ServiceInterface

INTERFACE = ServiceInterface(
    name="stage-tracker",
    port=8002,
    schema="tracker",
    produces=(STAGE_EVENTS, STAGE_COMMANDS),
    consumes=(LEAD_EVENTS, ACTIVITY_EVENTS, TOUCH_EVENTS, STAGE_COMMANDS),
)
