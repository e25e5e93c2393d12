"""The projection's lag behind the topics is on reporting's /metrics: records behind each
partition's end, above zero while a backlog is being consumed, back to zero once it is."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.reporting_dataset import generate
from funnel_devstack.stack import Stack
from reporting.projection.rebuild import end_offsets
from tests.integration.reporting_support import publish

pytestmark = pytest.mark.integration


async def _lag(client: httpx.AsyncClient) -> tuple[dict[tuple[str, str], float], float]:
    """funnel_consumer_lag per (topic, partition), and the events consumed so far."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    lag: dict[tuple[str, str], float] = {}
    consumed = 0.0
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == "funnel_consumer_lag":
                lag[(s.labels["topic"], s.labels["partition"])] = s.value
            elif s.name == "funnel_events_consumed_total":
                consumed += s.value
    return lag, consumed


async def test_the_lag_metric_rises_with_a_backlog_and_returns_to_zero(module_infra: Stack) -> None:
    stack = module_infra
    data = generate(500, seed=31)
    # A backlog published while reporting is down: the consumer starts thousands of records
    # behind and reads them 200 at a time, so its lag is visible before it is zero.
    sent = await publish(stack, data.events)
    ends = await end_offsets(stack.kafka_bootstrap)  # every partition of every funnel topic
    assert sum(ends.values()) == sent
    await stack._run_command("reporting", "migrate")
    stack.start_service("reporting")
    try:
        await stack.wait_service_ready("reporting")
        seen_max = 0.0
        async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
            deadline = time.monotonic() + 180
            while True:
                lag, consumed = await _lag(client)
                seen_max = max(seen_max, sum(lag.values()))
                if consumed >= sent and lag and not any(lag.values()):
                    break
                assert time.monotonic() < deadline, f"lag {lag}, consumed {consumed} of {sent}"
                await asyncio.sleep(0.05)
        assert consumed == sent
        # Every partition that holds the backlog is reported, each at zero now.
        holding = {(tp.topic, str(tp.partition)) for tp, end in ends.items() if end > 0}
        assert holding <= set(lag)
        assert {lag[tp] for tp in holding} == {0.0}
        # It was behind: more than one batch of records, never more than were published.
        assert 200 < seen_max <= sent
    finally:
        stack.stop_service("reporting")
