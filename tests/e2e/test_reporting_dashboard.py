"""The dashboard in real headless Chromium (Debian's, driven by Playwright): it renders, its
numbers equal the API's, the filters change them, and it refreshes live as events arrive.

reporting runs as its own process on a private PostgreSQL and Kafka; the events are generated
and published onto the contract topics. A screenshot is kept in tests/artifacts/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Download, Locator, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from bench.reporting_dataset import generate
from funnel_devstack.stack import Stack
from tests.e2e.browser import collect_errors, wait_for_js
from tests.e2e.waiting import eventually
from tests.integration.reporting_support import get, publish

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TZ = "America/Los_Angeles"
PERIOD = {"start": "2026-09-01", "end": "2026-10-31"}


@pytest.fixture(scope="module")
async def reporting(module_infra: Stack) -> AsyncIterator[Stack]:
    stack = module_infra
    data = generate(300, seed=5)
    await stack._run_command("reporting", "migrate")
    stack.start_service("reporting")
    try:
        await stack.wait_service_ready("reporting")
        await publish(stack, data.events, data.duplicates)
        await eventually(lambda: _inbox(stack), lambda n: n == len(data.events), timeout=120)
        assert await _inbox(stack) == len(data.events)
        yield stack
    finally:
        stack.stop_service("reporting")


async def _inbox(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM reporting.inbox"))
    finally:
        await conn.close()


async def _loads(page: Page) -> int:
    return int(await page.evaluate("Number(document.body.dataset.loaded || 0)"))


async def _next_render(page: Page, after: int) -> None:
    await wait_for_js(page, f"Number(document.body.dataset.loaded || 0) > {after}")


async def _kpi(page: Page, name: str) -> str:
    return (await page.locator(f'[data-kpi="{name}"]').inner_text()).strip()


async def _table(page: Page) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#breakdown-table tbody tr')]
            .map(tr => [tr.dataset.segment, [...tr.querySelectorAll('td[data-stage]')]
            .map(td => Number(td.firstChild.textContent.replace(/[^0-9]/g, '')))]))"""
    )
    return rows


def _groups(body: dict[str, Any]) -> dict[str, list[int]]:
    return {g["segment"]: [s["leads"] for s in g["steps"]] for g in body["groups"]}


async def test_the_dashboard_shows_the_apis_numbers_follows_filters_and_refreshes_live(
    reporting: Stack,
) -> None:
    stack = reporting
    conversion = "/v1/funnels/digital-sales/conversion"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = await browser.new_context(
                timezone_id=TZ, viewport={"width": 1440, "height": 1180}, device_scale_factor=1
            )
            page = await context.new_page()
            errors = collect_errors(page)
            url = (
                f"{stack.url('reporting')}/dashboard?start={PERIOD['start']}"
                f"&end={PERIOD['end']}#key={stack.admin_api_key}"
            )
            await page.goto(url)
            await _next_render(page, 0)

            # The funnel: KPIs and the chart's bars are the API's numbers, in the browser's zone.
            api = await get(stack, conversion, **PERIOD, tz=TZ)
            steps = [s["leads"] for s in api["groups"][0]["steps"]]
            assert await _kpi(page, "entered") == f"{steps[0]:,}"
            assert await _kpi(page, "converted") == f"{steps[-1]:,}"
            assert (
                await _kpi(page, "conversion")
                == f"{api['groups'][0]['overall_conversion'] * 100:.1f}%"
            )
            bars = await page.evaluate(
                "echarts.getInstanceByDom(document.getElementById('funnel-chart'))"
                ".getOption().series[0].data"
            )
            assert bars == steps
            assert steps[0] > 250
            snapshot = await get(stack, "/v1/funnels/digital-sales/snapshot")
            assert await _kpi(page, "now") == f"{snapshot['total']:,}"
            by_source = await get(stack, conversion, **PERIOD, tz=TZ, breakdown="source")
            assert await _table(page) == _groups(by_source)
            weekly = await get(stack, conversion, **PERIOD, tz=TZ, cohort="week")
            drawn = await page.evaluate(
                "echarts.getInstanceByDom(document.getElementById('time-chart'))"
                ".getOption().series.map(s => s.data)"
            )
            assert drawn[0] == [g["steps"][0]["leads"] for g in weekly["groups"]]
            assert drawn[3] == [g["steps"][3]["conversion_from_first"] for g in weekly["groups"]]
            assert len(drawn[0]) == 9  # the weeks (from Monday) that 2026-09-01..10-31 touches
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "reporting-dashboard.png"), full_page=True)

            # Filters: the breakdown, the attribution and the window change what is shown.
            before = await _loads(page)
            await page.select_option("#breakdown", "campaign")
            await _next_render(page, before)
            before = await _loads(page)
            await page.select_option("#attribution", "last")
            await _next_render(page, before)
            by_campaign = await get(
                stack, conversion, **PERIOD, tz=TZ, breakdown="campaign", attribution="last"
            )
            assert await _table(page) == _groups(by_campaign)
            assert set(_groups(by_campaign)) != set(_groups(by_source))
            before = await _loads(page)
            await page.select_option("#window", "1")
            await _next_render(page, before)
            short = await get(stack, conversion, **PERIOD, tz=TZ, window_days=1)
            short_steps = [s["leads"] for s in short["groups"][0]["steps"]]
            assert short_steps != steps
            assert await _kpi(page, "converted") == f"{short_steps[-1]:,}"

            # Live: new leads show up without touching the page; the leads of now are pushed
            # by the snapshot's stream as they change.
            assert await page.evaluate("document.body.dataset.stream") == "open"
            pushed = int(await page.evaluate("Number(document.body.dataset.pushed || 0)"))
            assert pushed >= 1  # the stream's first snapshot
            more = generate(40, seed=99)
            total = await _inbox(stack) + len(more.events)
            await publish(stack, more.events)
            await eventually(lambda: _inbox(stack), lambda n: n == total, timeout=60)
            assert await _inbox(stack) == total
            expected = await get(stack, conversion, **PERIOD, tz=TZ, window_days=1)
            assert expected["groups"][0]["steps"][0]["leads"] > short_steps[0] + 30
            grown = f"{expected['groups'][0]['steps'][0]['leads']:,}"
            await eventually(lambda: _kpi(page, "entered"), lambda text: text == grown, timeout=30)
            assert await _kpi(page, "entered") == grown
            now = await get(stack, "/v1/funnels/digital-sales/snapshot")
            assert now["total"] > snapshot["total"]
            await eventually(
                lambda: page.evaluate("document.body.dataset.pushedTotal"),
                lambda total: total == str(now["total"]),
                timeout=30,
            )
            assert int(await page.evaluate("Number(document.body.dataset.pushed)")) > pushed
            assert await _kpi(page, "now") == f"{now['total']:,}"
            assert errors == []
        finally:
            await browser.close()


async def test_a_browser_in_india_sees_its_own_days(reporting: Stack) -> None:
    """A browser in Asia/Kolkata (+05:30): the dashboard asks for its zone, not UTC, and its
    daily bars are the API's days in India, which differ from UTC's days."""
    stack = reporting
    india = "Asia/Kolkata"
    september = {"start": "2026-09-01", "end": "2026-09-30"}  # <= 42 days: daily points
    conversion = "/v1/funnels/digital-sales/conversion"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = await browser.new_context(
                timezone_id=india, viewport={"width": 1440, "height": 1180}
            )
            page = await context.new_page()
            errors = collect_errors(page)
            asked: list[str] = []
            page.on("request", lambda r: asked.append(r.url))
            await page.goto(
                f"{stack.url('reporting')}/dashboard?start={september['start']}"
                f"&end={september['end']}#key={stack.admin_api_key}"
            )
            await _next_render(page, 0)
            # Chromium names the zone by ICU's canonical id, Asia/Calcutta (a link to
            # Asia/Kolkata in the IANA database): the API answers it the same.
            zone = await page.evaluate("document.body.dataset.tz")
            assert zone in (india, "Asia/Calcutta")
            assert zone in await page.locator("#updated").inner_text()
            conversions = [u for u in asked if "/conversion?" in u]
            assert conversions
            assert all(f"tz={zone.replace('/', '%2F')}" in u for u in conversions)

            api = await get(stack, conversion, **september, tz=india)
            steps = [s["leads"] for s in api["groups"][0]["steps"]]
            assert await _kpi(page, "entered") == f"{steps[0]:,}"
            daily = await get(stack, conversion, **september, tz=india, cohort="day")
            drawn = await page.evaluate(
                "echarts.getInstanceByDom(document.getElementById('time-chart')).getOption()"
            )
            assert drawn["xAxis"][0]["data"] == [g["cohort"] for g in daily["groups"]]
            assert drawn["series"][0]["data"] == [g["steps"][0]["leads"] for g in daily["groups"]]
            utc_daily = await get(stack, conversion, **september, tz="UTC", cohort="day")
            assert [g["steps"][0]["leads"] for g in utc_daily["groups"]] != drawn["series"][0][
                "data"
            ]
            # Revenue per day and MRR per week, in India's days, as the API answers them.
            revenue = await get(
                stack, "/v1/funnels/digital-sales/revenue", **september, tz=zone, interval="day"
            )
            assert revenue["series"]
            drawn_revenue = await page.evaluate(
                "echarts.getInstanceByDom(document.getElementById('revenue-chart')).getOption()"
            )
            periods = sorted({p["period"] for p in revenue["series"]})
            assert drawn_revenue["xAxis"][0]["data"] == periods
            by_period = {p["period"]: float(p["revenue"]) for p in revenue["series"]}
            assert drawn_revenue["series"][0]["data"] == [by_period[p] for p in periods]
            subs = await get(
                stack,
                "/v1/funnels/digital-sales/subscriptions",
                **september,
                tz=zone,
                interval="week",
            )
            assert subs["series"]
            drawn_mrr = await page.evaluate(
                "echarts.getInstanceByDom(document.getElementById('mrr-chart')).getOption()"
            )
            assert drawn_mrr["series"][0]["data"] == [float(p["mrr"]) for p in subs["series"]]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(
                path=str(ARTIFACTS / "reporting-dashboard-kolkata.png"), full_page=True
            )
            assert errors == []
        finally:
            await browser.close()


async def _download(page: Page, button: Locator, name: str, console: list[str]) -> Download:
    """The file a click on an export button saves; when none comes, the page as it was and
    what its console said are kept for the reader of the failure."""
    # Chromium drops the 11th download a page starts within one second: a person does not
    # click that fast, a test on a quiet machine does.
    await asyncio.sleep(0.15)
    try:
        async with page.expect_download() as info:
            await button.click()
        return await info.value
    except PlaywrightTimeoutError:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"export-{name}-failed.png"), full_page=True)
        state = await page.evaluate(
            "({loaded: document.body.dataset.loaded, error: document.getElementById('error')"
            ".textContent, active: document.activeElement && document.activeElement.tagName})"
        )
        raise AssertionError(f"no download for {name}: page {state}, console {console}") from None


async def test_compare_two_periods_cohort_heat_map_and_every_view_exported(
    reporting: Stack,
) -> None:
    """The previous period's figures beside the KPIs, the week x step heat map equal to the
    API's weekly cohorts, and each view downloaded as the API's CSV and as a PNG."""
    stack = reporting
    conversion = "/v1/funnels/digital-sales/conversion"
    period = {"start": "2026-09-15", "end": "2026-10-14"}
    previous = {"start": "2026-08-16", "end": "2026-09-14"}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = await browser.new_context(
                timezone_id=TZ, viewport={"width": 1440, "height": 1180}, accept_downloads=True
            )
            page = await context.new_page()
            errors = collect_errors(page)
            console: list[str] = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            await page.goto(
                f"{stack.url('reporting')}/dashboard?start={period['start']}"
                f"&end={period['end']}&compare=previous#key={stack.admin_api_key}"
            )
            await _next_render(page, 0)

            now = await get(stack, conversion, **period, tz=TZ)
            then = await get(stack, conversion, **previous, tz=TZ)
            entered = now["groups"][0]["steps"][0]["leads"]
            before = then["groups"][0]["steps"][0]["leads"] if then["groups"] else 0
            delta = page.locator('[data-kpi-delta="entered"]')
            assert int(await delta.get_attribute("data-diff") or "x") == entered - before
            assert "2026-08-16 \u2013 2026-09-14" in await delta.inner_text()
            rates = [g["overall_conversion"] for g in (now["groups"][0], then["groups"][0])]
            shown = await page.locator('[data-kpi-delta="conversion"]').get_attribute("data-diff")
            assert float(shown or "nan") == pytest.approx(rates[0] - rates[1])

            weekly = await get(stack, conversion, **period, tz=TZ, cohort="week")
            heat = await page.evaluate(
                "echarts.getInstanceByDom(document.getElementById('heatmap-chart'))"
                ".getOption().series[0].data"
            )
            expected = [
                [x, y, s["conversion_from_first"]]
                for y, g in enumerate(weekly["groups"])
                for x, s in enumerate(g["steps"][1:])
            ]
            assert heat == expected
            assert len(weekly["groups"]) == 5  # the weeks from Monday the period touches

            params = {**period, "tz": TZ, "window_days": "14"}
            api_csv = {
                "funnel": await get(stack, conversion, **params, format="csv"),
                "heatmap": await get(stack, conversion, **params, cohort="week", format="csv"),
                "stays": await get(
                    stack, "/v1/funnels/digital-sales/time-in-stage", **period, tz=TZ,
                    format="csv",
                ),
                "breakdown": await get(
                    stack, conversion, **params, breakdown="source", attribution="first",
                    format="csv",
                ),
            }  # fmt: skip
            for view in ("funnel", "time", "stays", "revenue", "mrr", "heatmap", "breakdown"):
                for fmt in ("csv", "png"):
                    button = page.locator(
                        f'.export[data-view="{view}"] button[data-format="{fmt}"]'
                    )
                    download = await _download(page, button, f"{view}-{fmt}", console)
                    assert download.suggested_filename.endswith(f".{fmt}"), view
                    data = Path(await download.path()).read_bytes()
                    if fmt == "png":
                        assert data[:8] == b"\x89PNG\r\n\x1a\n", view
                        assert len(data) > 2000, view
                    elif view in api_csv:
                        assert data.decode() == api_csv[view], view
                    else:
                        assert data.decode().count("\n") >= 2, view
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(
                path=str(ARTIFACTS / "reporting-dashboard-compare.png"), full_page=True
            )
            assert errors == []
        finally:
            await browser.close()
