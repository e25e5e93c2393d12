"""The snapshot's live stream, on the real reporting service, PostgreSQL and Kafka: the
snapshot when it opens, then each committed change pushed to every open stream, equal to the
GET snapshot; streams take no load-shedding slot; bad requests get their problem; and a
stopping service ends its streams instead of waiting for them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from funnel_devstack.stack import Stack
from tests.integration.kit_support import eventually, stage_changed
from tests.integration.reporting_support import get, publish

pytestmark = pytest.mark.integration

FUNNEL = "it-funnel"  # kit_support.stage_changed's
STREAM = f"/v1/funnels/{FUNNEL}/snapshot/stream"


class Stream:
    """One open stream: its `snapshot` events, parsed, as they come."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.content_type = ""

    async def read(self, client: httpx.AsyncClient, opened: asyncio.Event) -> None:
        try:
            async with client.stream("GET", STREAM) as response:
                assert response.status_code == 200, await response.aread()
                self.content_type = response.headers["content-type"]
                opened.set()
                event, data = None, []
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        data.append(line.split(":", 1)[1].strip())
                    elif line == "" and data:
                        assert event == "snapshot"
                        await self.events.put(json.loads("\n".join(data)))
                        event, data = None, []
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server went away mid-stream
        finally:
            opened.set()  # a refused stream too: its opener sees no content type
            self.ended.set()

    async def next(self, timeout: float = 20) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until_total(self, total: int) -> list[dict[str, Any]]:
        seen = [await self.next()]
        while seen[-1]["total"] < total:
            seen.append(await self.next())
        return seen


@contextlib.asynccontextmanager
async def streams(stack: Stack, n: int) -> AsyncIterator[list[Stream]]:
    headers = {"Authorization": f"Bearer {stack.admin_api_key}"}
    timeout = httpx.Timeout(30, read=60)
    async with httpx.AsyncClient(
        base_url=stack.url("reporting"), headers=headers, timeout=timeout
    ) as client:
        made: list[Stream] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            # One after the other: each has started (and given back its in-flight slot)
            # before the next asks, so the server's cap of two is never met by openings.
            for _ in range(n):
                opened, stream = asyncio.Event(), Stream()
                made.append(stream)
                tasks.append(asyncio.create_task(stream.read(client, opened)))
                await asyncio.wait_for(opened.wait(), 30)
                assert stream.content_type.startswith("text/event-stream"), "refused"
            yield made
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(scope="module")
async def reporting(module_infra: Stack) -> AsyncIterator[Stack]:
    stack = module_infra
    # Two requests at most in flight: three open streams would shut out every other request
    # if a stream kept its slot.
    stack.extra_env["FUNNEL_HTTP_MAX_IN_FLIGHT"] = "2"
    stack.extra_env["FUNNEL_SNAPSHOT_STREAMS_MAX"] = "3"  # the streams' own cap
    await stack._run_command("reporting", "migrate")
    stack.start_service("reporting")
    try:
        await stack.wait_service_ready("reporting")
        yield stack
    finally:
        stack.stop_service("reporting")
        del stack.extra_env["FUNNEL_HTTP_MAX_IN_FLIGHT"]
        del stack.extra_env["FUNNEL_SNAPSHOT_STREAMS_MAX"]


async def test_each_committed_change_reaches_every_open_stream(reporting: Stack) -> None:
    stack = reporting
    async with streams(stack, 3) as open_streams:
        assert all(s.content_type.startswith("text/event-stream") for s in open_streams)
        first = [await s.next() for s in open_streams]
        assert first == [{"funnel_id": FUNNEL, "total": 0, "stages": []}] * 3
        # The three streams are open, and other requests are still served.
        assert (await get(stack, f"/v1/funnels/{FUNNEL}/snapshot"))["total"] == 0
        # A fourth stream is past the cap: refused before it starts, with its problem.
        async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
            fourth = await client.get(
                STREAM, headers={"Authorization": f"Bearer {stack.admin_api_key}"}
            )
        assert fourth.status_code == 503
        assert fourth.headers["content-type"] == "application/problem+json"
        assert fourth.headers["retry-after"] == "5"
        assert fourth.json()["type"] == "urn:funnel:problem:overloaded"
        assert await _open_streams(stack) == 3.0  # the operators' gauge: the refused one is not

        leads = [uuid.uuid4() for _ in range(3)]
        await publish(stack, [stage_changed(lead, 0) for lead in leads])
        await publish(stack, [stage_changed(leads[0], 1)])
        final = {
            "funnel_id": FUNNEL,
            "total": 3,
            "stages": [
                {"stage": "stage-0", "position": 0, "leads": 2},
                {"stage": "stage-1", "position": 1, "leads": 1},
            ],
        }
        for s in open_streams:
            seen = await s.until_total(3)
            while seen[-1] != final:
                seen.append(await s.next())
            # Pushed only when it changed: no two events alike in a row.
            assert all(a != b for a, b in itertools.pairwise(seen))
            assert [e["total"] for e in seen] == sorted(e["total"] for e in seen)
        assert await get(stack, f"/v1/funnels/{FUNNEL}/snapshot") == final

        # Nothing changes: nothing is sent (a keep-alive comment is no event).
        for s in open_streams:
            with pytest.raises(TimeoutError):
                await s.next(timeout=1.5)


async def _open_streams(stack: Stack) -> float:
    """`funnel_snapshot_streams` on reporting's /metrics."""
    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
        text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "funnel_snapshot_streams":
                return float(sample.value)
    raise AssertionError("no funnel_snapshot_streams on /metrics")


async def _listening(stack: Stack) -> int:
    """reporting's sessions waiting on its change channel."""
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE query ILIKE 'LISTEN %reporting_changed%'"
            )
        )
    finally:
        await conn.close()


async def test_a_stream_opened_later_starts_from_the_numbers_as_they_are(reporting: Stack) -> None:
    before = await get(reporting, f"/v1/funnels/{FUNNEL}/snapshot")
    async with streams(reporting, 2) as (s, t):
        assert await s.next() == before
        assert await t.next() == before
        assert await _listening(reporting) == 1  # one LISTEN session for both
    # The clients went away: their streams ended, and with the last one the LISTEN session.
    await eventually(lambda: _listening(reporting), lambda n: n == 0, timeout=10)
    assert await _open_streams(reporting) == 0.0


async def test_bad_stream_requests_get_their_problem(reporting: Stack) -> None:
    async with httpx.AsyncClient(base_url=reporting.url("reporting"), timeout=10) as client:
        anonymous = await client.get(STREAM)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        bad = await client.get(
            "/v1/funnels/Not%20A%20Funnel/snapshot/stream",
            headers={"Authorization": f"Bearer {reporting.admin_api_key}"},
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert "funnel_id" in bad.text


async def test_a_stopping_service_ends_its_open_streams(reporting: Stack) -> None:
    # Last in the module: it stops the service (the fixture's stop is then a no-op).
    async with streams(reporting, 2) as open_streams:
        for s in open_streams:
            await s.next()
        started = time.monotonic()
        # Without ending its streams, uvicorn would wait out its graceful timeout (20 s).
        assert await asyncio.to_thread(reporting.stop_service, "reporting", 10)
        stopped_in = time.monotonic() - started
        for s in open_streams:
            await asyncio.wait_for(s.ended.wait(), 5)
    assert stopped_in < 10
