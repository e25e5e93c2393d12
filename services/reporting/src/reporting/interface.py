"""reporting's wiring, as the README's tour draws it (tests/consistency checks it)."""

from funnel_contracts.topics import ALL_TOPICS, REPORT_EVENTS
from funnel_contracts.topology import HttpCall, ServiceInterface

# The workspace pages (served here, under /dashboard) call the other services through
# reporting's allow-listed pass-through `/workspace/api/{service}/...`, with the caller's key.
INTERFACE = ServiceInterface(
    name="reporting",
    port=8004,
    schema="reporting",
    produces=(REPORT_EVENTS,),
    consumes=ALL_TOPICS,
    calls=(
        HttpCall(
            "stage-tracker",
            "GET /v1/leads",
            "the workspace's lead lists, a lead's journey; moves and owners",
            "FUNNEL_TRACKER_URL",
        ),
        HttpCall(
            "lead-intake",
            "GET /v1/leads/{lead_id}",
            "the workspace's person and touchpoints; calls, meetings, notes logged",
            "FUNNEL_INTAKE_URL",
        ),
        HttpCall(
            "notifier",
            "GET /v1/tasks",
            "the workspace's open tasks of a lead, and finishing one",
            "FUNNEL_NOTIFIER_URL",
        ),
    ),
)
