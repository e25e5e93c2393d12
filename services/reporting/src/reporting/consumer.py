"""reporting's consumer: every stage event into the projections."""

from __future__ import annotations

from funnel_contracts import StageChanged
from funnel_contracts.topics import STAGE_EVENTS
from funnel_servicekit.inbox import InboxConsumer
from funnel_servicekit.runtime import ServiceRuntime, Worker
from reporting.projection import handle

HANDLED = (StageChanged.event_type,)


def workers(runtime: ServiceRuntime) -> list[Worker]:
    settings = runtime.settings
    consumer = InboxConsumer(
        pool=runtime.pool,
        producer=runtime.producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.service_name,
        topics=[STAGE_EVENTS],
        handler=handle,
        handled_types=HANDLED,
        max_attempts=settings.consumer_max_attempts,
    )
    return [Worker("stage-events-consumer", consumer.run, consumer.stop)]
