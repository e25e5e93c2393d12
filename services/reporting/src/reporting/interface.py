"""reporting's wiring, as the README's tour draws it (tests/consistency checks it)."""

from funnel_contracts.topics import ALL_TOPICS, REPORT_EVENTS
from funnel_contracts.topology import API, HttpCall, ServiceInterface

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
            made_by=(API,),
        ),
        HttpCall(
            "lead-intake",
            "GET /v1/leads/{lead_id}",
            "the workspace's person and touchpoints; calls, meetings, notes logged",
            "FUNNEL_INTAKE_URL",
            made_by=(API,),
        ),
        HttpCall(
            "notifier",
            "GET /v1/tasks",
            "the workspace's open tasks of a lead, and finishing one",
            "FUNNEL_NOTIFIER_URL",
            made_by=(API,),
        ),
    ),
    # The dashboard and the leads workspace pages, their scripts (dashboard/routes.py), and what
    # the pages call on their own origin, each with the caller's key: the reports, a lead's
    # timeline, and the workspace's allow-listed pass-through (decision 0026).
    public_routes=(
        "/dashboard",
        "/dashboard/leads",
        "/dashboard/lead",
        "/dashboard/static",
        "/v1/funnels",
        "/v1/funnels/{funnel_id}/snapshot",
        "/v1/funnels/{funnel_id}/snapshot/stream",
        "/v1/funnels/{funnel_id}/conversion",
        "/v1/funnels/{funnel_id}/conversion-over-time",
        "/v1/funnels/{funnel_id}/time-in-stage",
        "/v1/funnels/{funnel_id}/time-to-convert",
        "/v1/funnels/{funnel_id}/interactions-before-purchase",
        "/v1/funnels/{funnel_id}/touch-effectiveness",
        "/v1/funnels/{funnel_id}/revenue",
        "/v1/funnels/{funnel_id}/subscriptions",
        "/v1/funnels/{funnel_id}/leaks",
        "/v1/leads/{lead_id}/timeline",
        "/workspace/api/whoami",
        "/workspace/api/{service_name}/{path:path}",
    ),
)
