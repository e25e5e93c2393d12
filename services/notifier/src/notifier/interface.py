"""notifier's wiring, as the README's tour draws it (tests/consistency checks it) and the
network policies open it (tests/deploy/test_deploy_traffic_paths.py checks them)."""

from funnel_contracts.topics import (
    ACTIVITY_EVENTS,
    LEAD_EVENTS,
    REPORT_EVENTS,
    STAGE_EVENTS,
    TOUCH_EVENTS,
)
from funnel_contracts.topology import WORKER, Connection, HttpCall, ServiceInterface

INTERFACE = ServiceInterface(
    name="notifier",
    port=8003,
    schema="notifier",
    produces=(TOUCH_EVENTS,),
    consumes=(LEAD_EVENTS, ACTIVITY_EVENTS, STAGE_EVENTS, REPORT_EVENTS),
    calls=(
        # people/worker.py: the contact resolver, a loop of the worker (never the API).
        HttpCall(
            "lead-intake",
            "POST /v1/data-keys/lookup",
            "a batch of people's data keys, to read their sealed contact details",
            "FUNNEL_INTAKE_URL",
            made_by=(WORKER,),
        ),
        # The same, one person at a time, from an intake without the batch call.
        HttpCall(
            "lead-intake",
            "GET /v1/leads/{lead_id}/data-key",
            "a person's data key, to read their sealed contact details",
            "FUNNEL_INTAKE_URL",
            made_by=(WORKER,),
        ),
    ),
    connections=(
        # channels/smtp.py, from the sender loop.
        Connection(
            "smtp",
            "emails",
            "FUNNEL_SMTP_HOST",
            made_by=(WORKER,),
            port_setting="FUNNEL_SMTP_PORT",
        ),
        # channels/webhook.py: signed webhooks to the receivers playbooks name (HTTPS; an
        # empty allow-list means any public host).
        Connection(
            "webhooks",
            "signed webhooks and sales-task webhooks",
            "FUNNEL_WEBHOOK_ALLOWED_HOSTS",
            made_by=(WORKER,),
            port=443,
        ),
        # touches/worker.py: a sales task is also posted to this receiver, when one is set.
        Connection(
            "sales-task-webhook",
            "sales tasks to the team's tool",
            "FUNNEL_SALES_TASK_WEBHOOK_URL",
            made_by=(WORKER,),
            when="FUNNEL_SALES_TASK_WEBHOOK_URL",
        ),
    ),
    public_routes=("/t/u/{token}", "/t/o/{token}", "/t/c/{token}"),
)
