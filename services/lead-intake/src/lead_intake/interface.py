"""lead-intake's wiring, as the README's tour draws it (tests/consistency checks it) and the
network policies open it (tests/deploy/test_deploy_traffic_paths.py checks them)."""

from funnel_contracts.topics import ACTIVITY_EVENTS, LEAD_EVENTS
from funnel_contracts.topology import API, WORKER, Connection, HttpCall, ServiceInterface

INTERFACE = ServiceInterface(
    name="lead-intake",
    port=8001,
    schema="intake",
    produces=(LEAD_EVENTS, ACTIVITY_EVENTS),
    consumes=(),
    calls=(
        # forms/service.py: saving a form checks its funnel (the API).
        HttpCall(
            "stage-tracker",
            "GET /v1/funnels/{funnel_id}",
            "a saved form's funnel exists",
            "FUNNEL_TRACKER_URL",
            made_by=(API,),
        ),
    ),
    connections=(
        # webhooks/worker.py: MetaFetcher reads each announced lead from Meta's Graph API; it
        # runs in the worker when a Graph access token is set.
        Connection(
            "meta-graph",
            "Meta lead ads read from the Graph API",
            "FUNNEL_META_GRAPH_BASE_URL",
            made_by=(WORKER,),
            when="FUNNEL_META_ACCESS_TOKEN",
        ),
    ),
    public_routes=(
        "/v1/forms/{form_id}/submissions",
        "/v1/forms/{form_id}/embed.js",
        "/v1/activities",
        # Ad platforms post their leads here (webhooks/routes.py), signed.
        "/v1/webhooks/meta",
        "/v1/forms/{form_id}/webhooks/typeform",
        "/v1/forms/{form_id}/webhooks/google-ads",
        "/v1/forms/{form_id}/webhooks/generic",
    ),
)
