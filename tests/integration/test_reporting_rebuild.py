"""Rebuild and erasure on the real topics: replaying every topic into fresh tables ends with
exactly the live numbers, and an erased person leaves no detail row while every aggregate
still equals the brute-force count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.reporting_dataset import STAGES, Dataset, generate
from funnel_contracts import EventData, LeadErased, LeakDetected, LeakResolved
from funnel_devstack.ports import free_port
from funnel_devstack.stack import Stack
from reporting.projection.store import TABLES
from tests.integration.kit_support import eventually
from tests.integration.reporting_oracle import Oracle
from tests.integration.reporting_support import counts_by_group, get, publish

pytestmark = pytest.mark.integration

START, END = date(2026, 9, 1), date(2026, 10, 31)
AGGREGATES = (
    "stage_counts",
    "entry_counts",
    "pair_conversions",
    "stage_stays",
    "touch_effect",
    "purchase_interactions",
    "customer_counts",
    "revenue",
    "revenue_by_time",
    "subscription_changes",
    "funnel_stages",
    "entry_counts_hourly",
    "pair_conversions_hourly",
    "entry_counts_6h",
    "pair_conversions_6h",
    "entry_counts_daily",
    "pair_conversions_daily",
    "entry_counts_weekly",
    "pair_conversions_weekly",
    "leaks",
)


def _leak_events() -> list[EventData]:
    """Two leaks of one step as reporting's watch would announce them: one found and
    resolved, then another one still open; a rebuild must get both back."""
    first, second = uuid4(), uuid4()
    at = datetime(2026, 10, 20, 4, tzinfo=UTC)
    common = {"funnel_id": "digital-sales", "from_stage": "interest", "to_stage": "desire",
              "segment": "source:google"}  # fmt: skip
    detected = {"window_days": 7, "baseline_rate": 0.5, "baseline_entered": 800,
                "baseline_converted": 400, "current_rate": 0.1, "current_entered": 200,
                "current_converted": 20, "p_value": 1e-12}  # fmt: skip
    return [
        LeakDetected(lead_id=first, leak_id=first, **common, **detected, detected_at=at),
        LeakResolved(lead_id=first, leak_id=first, **common, baseline_rate=0.5,
                     current_rate=0.49, p_value=0.4, resolved_at=at + timedelta(days=9)),
        LeakDetected(lead_id=second, leak_id=second, **common, **detected,
                     detected_at=at + timedelta(days=20)),
    ]  # fmt: skip


@pytest.fixture(scope="module")
async def loaded(module_infra: Stack) -> AsyncIterator[tuple[Stack, Dataset]]:
    stack = module_infra
    data = generate(150, seed=23)
    data.events += _leak_events()
    await stack._run_command("reporting", "migrate")
    # The live watch would check the leaks of September against today's clock: off here,
    # the leaks come from the events alone, as in the rebuild.
    stack.extra_env["FUNNEL_LEAK_CHECK_SECONDS"] = "0"
    stack.start_service("reporting")
    await stack.wait_service_ready("reporting")
    await publish(stack, data.events, data.duplicates)
    await _wait_for(stack, Oracle(data.events), len(data.events))
    try:
        yield stack, data
    finally:
        stack.stop_service("reporting")


async def _wait_for(stack: Stack, oracle: Oracle, inbox: int) -> None:
    """Until every published event is in the inbox and the numbers are the oracle's."""
    await eventually(
        lambda: _inbox_count(stack),
        lambda n: n == inbox,
        timeout=120,
        what="every event in the inbox",
    )
    body = await get(stack, "/v1/funnels/digital-sales/conversion", start=str(START), end=str(END))
    assert counts_by_group(body) == oracle.conversion(STAGES, START, END, "UTC", 14)


async def _inbox_count(stack: Stack) -> int:
    return int(await _sql(stack, "SELECT count(*) FROM reporting.inbox"))


async def _sql(stack: Stack, query: str, *args: object) -> object:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def _rebuild(stack: Stack, *extra: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reporting",
        "rebuild",
        *extra,
        env={**os.environ, **stack.command_env("reporting")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, out.decode()[-3000:]
    return out.decode()


# What the leak events carry. The live watch also refreshes an open leak's latest check
# (current counts, p-value, checked_at) every few minutes without an event, so those
# columns follow the wall clock and a rebuild cannot, and need not, restore them.
LEAK_COLUMNS = (
    "leak_id, funnel_id, from_stage, to_stage, segment, window_days, baseline_entered,"
    " baseline_converted, opened_at, resolved_at"
)


async def _differences(stack: Stack, left: str, right: str) -> dict[str, int]:
    """Rows in one schema's aggregate and not the other's; a row whose counters went back
    to zero is the same as no row."""
    out = {}
    for table in AGGREGATES:
        columns = LEAK_COLUMNS if table == "leaks" else "*"
        spec = TABLES.get(
            table.removesuffix("_hourly")
            .removesuffix("_6h")
            .removesuffix("_daily")
            .removesuffix("_weekly")
        )
        nonzero = " OR ".join(f"{c} <> 0" for c, _ in spec.values) if spec else "true"
        query = f"""SELECT count(*) FROM (
            (SELECT {columns} FROM {left}.{table} WHERE {nonzero}
             EXCEPT SELECT {columns} FROM {right}.{table} WHERE {nonzero})
            UNION ALL
            (SELECT {columns} FROM {right}.{table} WHERE {nonzero}
             EXCEPT SELECT {columns} FROM {left}.{table} WHERE {nonzero})) d"""  # noqa: S608
        out[table] = int(await _sql(stack, query))  # type: ignore[call-overload]
    return out


async def _scrape_rebuild_lag(port: int, done: asyncio.Event) -> list[float]:
    """funnel_reporting_rebuild_lag from the rebuild's /metrics, every 50 ms while it runs."""
    seen: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
        while not done.is_set():
            with contextlib.suppress(httpx.HTTPError):  # not listening yet, or gone
                text = (await client.get("/metrics")).text
                seen += [
                    s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.name == "funnel_reporting_rebuild_lag"
                ]
            await asyncio.sleep(0.05)
    return seen


async def test_a_rebuild_from_the_topics_ends_with_identical_tables(loaded) -> None:  # type: ignore[no-untyped-def]
    stack, data = loaded
    port, done = free_port(), asyncio.Event()
    scraper = asyncio.create_task(_scrape_rebuild_lag(port, done))
    try:
        out = await _rebuild(stack, "--schema", "reporting_rebuild", "--metrics-port", str(port))
    finally:
        done.set()
    scraped = await scraper
    # Its lag was on /metrics while it ran: every record at first, falling to zero (the
    # zeros before the first measurement are the gauge's initial value). The gauge is set
    # with each progress line; the last one, 0, may come too close to the exit to be scraped.
    progress = [
        json.loads(line)["lag"] for line in out.splitlines() if '"rebuild progress"' in line
    ]
    records = len(data.events) + len(data.duplicates)
    assert 0 < progress[0] <= records
    assert progress == sorted(progress, reverse=True)
    assert progress[-1] == 0
    lags = scraped[next(i for i, v in enumerate(scraped) if v > 0) :]
    assert lags
    assert lags == sorted(lags, reverse=True)
    assert set(lags) <= set(progress)  # /metrics showed what the rebuild measured
    assert f"rebuilt reporting_rebuild: {len(data.events)} events" in out
    live_rows = int(await _sql(stack, "SELECT count(*) FROM reporting.pair_conversions"))  # type: ignore[arg-type]
    assert live_rows > 100
    assert await _differences(stack, "reporting", "reporting_rebuild") == dict.fromkeys(
        AGGREGATES, 0
    )
    # The leaks came back from funnel.report-events: one resolved, one open.
    assert (
        await _sql(
            stack, "SELECT count(*) FILTER (WHERE resolved_at IS NULL) FROM reporting_rebuild.leaks"
        )
        == 1
    )
    assert await _sql(stack, "SELECT count(*) FROM reporting_rebuild.leaks") == 2
    assert await _sql(stack, "SELECT count(*) FROM reporting_rebuild.lead_states") == await _sql(
        stack, "SELECT count(*) FROM reporting.lead_states"
    )


async def test_erasure_removes_the_detail_rows_and_keeps_the_aggregates_exact(loaded) -> None:  # type: ignore[no-untyped-def]
    stack, data = loaded
    victim = next(e.lead_id for e in data.events if getattr(e, "to_stage", None) == "interest")
    assert (
        await _sql(stack, "SELECT count(*) FROM reporting.lead_states WHERE lead_id = $1", victim)
        == 1
    )
    erasure = LeadErased(lead_id=victim, request_id=uuid4(), erased_at=datetime.now(UTC))
    await publish(stack, [erasure])
    events = [*data.events, erasure]
    await _wait_for(stack, Oracle(events), len(events))
    assert (
        await _sql(stack, "SELECT count(*) FROM reporting.lead_states WHERE lead_id = $1", victim)
        == 0
    )
    assert (
        await _sql(stack, "SELECT count(*) FROM reporting.erased_leads WHERE lead_id = $1", victim)
        == 1
    )
    body = await get(stack, "/v1/funnels/digital-sales/snapshot")
    assert {s["stage"]: s["leads"] for s in body["stages"]} == Oracle(events).snapshot()
    # A late event of the erased person brings nothing back.
    await publish(stack, [e for e in data.events if e.lead_id == victim][:2])
    await _wait_for(stack, Oracle(events), len(events) + 2)
    assert (
        await _sql(stack, "SELECT count(*) FROM reporting.lead_states WHERE lead_id = $1", victim)
        == 0
    )


async def test_rebuild_with_swap_serves_the_same_numbers(loaded) -> None:  # type: ignore[no-untyped-def]
    stack, _ = loaded
    before = await get(
        stack,
        "/v1/funnels/digital-sales/conversion",
        start=str(START),
        end=str(END),
        cohort="week",
        breakdown="campaign",
    )
    stack.stop_service("reporting")
    out = await _rebuild(stack, "--swap")
    assert "now live as reporting" in out
    stack.start_service("reporting")
    await stack.wait_service_ready("reporting")
    after = await get(
        stack,
        "/v1/funnels/digital-sales/conversion",
        start=str(START),
        end=str(END),
        cohort="week",
        breakdown="campaign",
    )
    assert after == before
    assert await _sql(stack, "SELECT count(*) FROM reporting.lead_states") > 100
