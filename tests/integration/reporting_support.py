"""What the reporting integration tests share: publishing events, the service, its API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from funnel_contracts import Envelope, EventData, encode
from funnel_devstack.stack import Stack
from funnel_servicekit.kafka import create_producer


async def publish(stack: Stack, events: Sequence[EventData], duplicates: Sequence[int] = ()) -> int:
    """Publish events (CloudEvents binary mode) in order; the indexes in `duplicates` twice,
    with the same event id, as a redelivering producer would. Returns records sent."""
    producer = create_producer(stack.kafka_bootstrap, "reporting-test")
    await producer.start()
    twice = set(duplicates)
    sent = 0
    try:
        for i, event in enumerate(events):
            record = encode(Envelope.of(event, source="test/generator"))
            for _ in range(2 if i in twice else 1):
                await producer.send(
                    event.topic, value=record.value, key=record.key, headers=record.headers
                )
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def get(stack: Stack, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(
        base_url=stack.url("reporting"),
        headers={"Authorization": f"Bearer {stack.admin_api_key}"},
        timeout=30,
    ) as client:
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.text if params.get("format") == "csv" else response.json()


def counts_by_group(body: dict[str, Any]) -> dict[tuple[str | None, str | None], list[int]]:
    return {(g["cohort"], g["segment"]): [s["leads"] for s in g["steps"]] for g in body["groups"]}
