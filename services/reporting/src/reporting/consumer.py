"""reporting's consumer: every funnel topic into the projections."""

from __future__ import annotations

from funnel_contracts import (
    ActivityRecorded,
    LeadCaptured,
    LeadCapturedV2,
    LeadErased,
    LeadUpdated,
    LeadUpdatedV2,
    StageChanged,
    TouchClicked,
    TouchOpened,
    TouchSent,
)
from funnel_contracts.topics import ALL_TOPICS
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.runtime import Worker
from reporting.projection import handle, handle_batch
from reporting.runtime import ReportingRuntime

# The events some aggregate depends on; the rest of the topics is read and skipped.
HANDLED = tuple(
    model.event_type
    for model in (
        LeadCaptured,
        LeadCapturedV2,
        LeadUpdated,
        LeadUpdatedV2,
        LeadErased,
        ActivityRecorded,
        StageChanged,
        TouchSent,
        TouchOpened,
        TouchClicked,
    )
)


def projection_consumer(runtime: ReportingRuntime, group_id: str) -> InboxConsumer:
    settings = runtime.settings
    return InboxConsumer(
        pool=runtime.pool,
        producer=runtime.producer,
        producer_factory=runtime.producer_factory,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        topics=ALL_TOPICS,
        handler=handle,
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
        batch_handler=handle_batch,  # a partition batch at once; `handle` on a poison record
    )


def workers(runtime: ReportingRuntime) -> list[Worker]:
    consumer = projection_consumer(runtime, runtime.settings.service_name)
    return [Worker("projection-consumer", consumer.run, consumer.stop)]
