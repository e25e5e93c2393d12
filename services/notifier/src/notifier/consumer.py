"""What notifier does with events: keep what it knows of each lead, schedule the touches
playbooks call for, and cancel the ones the person has outgrown."""

from __future__ import annotations

import functools

import asyncpg

from funnel_contracts import (
    ActivityRecorded,
    Envelope,
    EventData,
    LeadCaptured,
    LeadCapturedV2,
    LeadErased,
    LeadScored,
    LeadUpdated,
    LeadUpdatedV2,
    StageChanged,
)
from funnel_contracts.sealed import unseal
from funnel_contracts.topics import ACTIVITY_EVENTS, LEAD_EVENTS, STAGE_EVENTS
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.runtime import Worker
from funnel_servicekit.telemetry import current_trace_headers
from notifier import lead_store, playbook_store, store
from notifier.data_keys import DataKeys, KeyServiceRefused
from notifier.playbooks import plans_for
from notifier.runtime import NotifierRuntime
from notifier.settings import NotifierSettings

HANDLED = (
    LeadCaptured.event_type,
    LeadUpdated.event_type,
    LeadCapturedV2.event_type,
    LeadUpdatedV2.event_type,
    LeadErased.event_type,
    ActivityRecorded.event_type,
    StageChanged.event_type,
    LeadScored.event_type,
)
WAKE_CHANNEL = "notifier_touches"
PersonEvent = LeadCaptured | LeadUpdated | LeadCapturedV2 | LeadUpdatedV2


async def handle(
    conn: asyncpg.Connection, envelope: Envelope, event: EventData, keys: DataKeys | None = None
) -> None:
    """One event inside the inbox transaction; `keys` opens v2 events' sealed personal data."""
    if await lead_store.is_erased(conn, event.lead_id):
        return  # the person asked to be forgotten; a late event must not bring them back
    if isinstance(event, PersonEvent):
        await _remember_person(conn, event, keys)
        return
    if isinstance(event, LeadErased):
        await lead_store.erase(conn, event.lead_id)
        await store.cancel_all(conn, event.lead_id, "erased")
        return
    funnel_id, stage = await lead_store.current_stage(conn, event.lead_id)
    if isinstance(event, StageChanged):
        if not await lead_store.enter_stage(
            conn, event.lead_id, event.funnel_id, event.to_stage, event.changed_at
        ):
            return  # an older move arriving late changes nothing
        await store.cancel_left_stage(conn, event.lead_id, event.to_stage)
        funnel_id, stage = event.funnel_id, event.to_stage
    elif isinstance(event, ActivityRecorded):
        await lead_store.record_activity(
            conn, event.lead_id, event.activity_type, event.occurred_at
        )
        await store.cancel_on_activity(conn, event.lead_id, event.activity_type, event.occurred_at)
    elif isinstance(event, LeadScored):
        known = await lead_store.temperature(conn, event.lead_id)
        if event.previous_temperature is None and known is not None:
            # The producer did not say where it came from; what we saw last is the answer,
            # so a lead that stays hot does not make a new sales task on every score.
            event = event.model_copy(update={"previous_temperature": known})
        await lead_store.set_temperature(
            conn, event.lead_id, event.temperature, event.score, event.scored_at
        )
    await _schedule(conn, envelope, event, funnel_id=funnel_id, stage=stage)


async def _remember_person(
    conn: asyncpg.Connection, event: PersonEvent, keys: DataKeys | None
) -> None:
    at = event.captured_at if isinstance(event, LeadCaptured | LeadCapturedV2) else event.updated_at
    contact = await _contact(event, keys)
    if contact is not None:
        email, first_name = contact
        await lead_store.upsert_contact(
            conn,
            event.lead_id,
            email=email,
            first_name=first_name,
            locale=event.locale,
            time_zone=event.time_zone,
        )
    if event.consent is not None and event.consent.categories:
        await lead_store.set_consents(
            conn,
            event.lead_id,
            event.consent.categories,
            granted=True,
            source=f"form:{event.form_id}" if event.form_id else event.source,
            at=event.consent.given_at or at,
        )
    # Touches scheduled before the contact was known can go now.
    await conn.execute(f"NOTIFY {WAKE_CHANNEL}")


async def _contact(
    event: PersonEvent, keys: DataKeys | None
) -> tuple[str | None, str | None] | None:
    """Email and first name (the only personal data kept here); None once erased at intake."""
    if isinstance(event, LeadCaptured | LeadUpdated):
        return event.email, event.first_name  # v1 records written before sealing
    if keys is None:
        raise KeyServiceRefused("no data-key service: sealed personal data is unreadable")
    key = await keys.key_of(event.lead_id)
    if key is None:
        return None  # erased at the source (its lead.erased follows): keep nothing
    person = unseal(
        event.personal_data, key=key, lead_id=event.lead_id, event_type=event.event_type
    )
    return person.email, person.first_name


async def _schedule(
    conn: asyncpg.Connection,
    envelope: Envelope,
    event: EventData,
    *,
    funnel_id: str | None,
    stage: str | None,
) -> None:
    books = await playbook_store.playbooks(conn)
    plans = plans_for(books, event, cause_id=envelope.id, current_stage=stage, funnel_id=funnel_id)
    # The consume span's context: the send joins the trace that began at the form post.
    trace_context = current_trace_headers()
    scheduled = 0
    for plan in plans:
        if await store.schedule(
            conn, event.lead_id, plan, cause_event_id=envelope.id, trace_context=trace_context
        ):
            scheduled += 1
    if scheduled:
        await conn.execute(f"NOTIFY {WAKE_CHANNEL}")


def consumer_worker(runtime: NotifierRuntime) -> Worker:
    settings = runtime.settings
    assert isinstance(settings, NotifierSettings)
    key = settings.intake_api_key
    keys = DataKeys(
        settings.intake_url,
        key.get_secret_value() if key else None,
        settings.intake_timeout_seconds,
    )
    consumer = InboxConsumer(
        pool=runtime.pool,
        producer=runtime.producer,
        producer_factory=runtime.producer_factory,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.service_name,
        topics=[LEAD_EVENTS, ACTIVITY_EVENTS, STAGE_EVENTS],
        handler=functools.partial(handle, keys=keys),
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
    )

    async def run() -> None:
        try:
            await consumer.run()
        finally:
            await keys.aclose()

    return Worker("events-consumer", run, consumer.stop)
