"""A leak alert end to end: events of 50 days in which one source's step conversion
collapses in the latest matured week; reporting (a process) detects the leak and writes
funnel.leak.detected.v1; the notifier (a process) makes the team's task from the shipped
`leak-alert` playbook and delivers it as a signed webhook to a real HTTP receiver; the
leak is listed by GET /v1/funnels/{funnel_id}/leaks. The task is the team's: listed by the
notifier's GET /v1/tasks with its leak_id and no lead, and in no person's timeline."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from playwright.async_api import async_playwright

from funnel_contracts import EventData, LeadCaptured, StageChanged, Utm
from funnel_devstack.stack import Stack
from notifier.channels.webhook_rules import verify
from tests.e2e.browser import collect_errors, wait_for_js
from tests.e2e.test_reporting_dashboard import CHROMIUM, FLAGS
from tests.e2e.waiting import eventually
from tests.integration.notifier_harness import WebhookReceiver, running_receiver
from tests.integration.reporting_support import get, publish

pytestmark = pytest.mark.e2e
SECRET = "leak-alert-webhook-secret-for-the-e2e-test"
STAGES = ("awareness", "interest")
SOURCES = ("google", "newsletter")
BASE_RATE, LEAKING_RATE = 0.6, 0.1
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _history(today: datetime, seed: int = 3) -> list[EventData]:
    """40 leads a day for 50 days up to 8 days ago, half from each source; awareness to
    interest within a day at 60%, except google's leads of the last matured week (10%)."""
    rng = random.Random(seed)
    events: list[EventData] = []
    midnight = datetime.combine(today.date(), time(0), tzinfo=UTC)
    for days_ago in range(50, 7, -1):
        day = midnight - timedelta(days=days_ago)
        for i in range(40):
            lead = UUID(int=rng.getrandbits(128), version=4)
            source = SOURCES[i % 2]
            at = day + timedelta(minutes=rng.randrange(0, 24 * 60))
            events.append(
                LeadCaptured(
                    lead_id=lead,
                    submission_id=UUID(int=rng.getrandbits(128), version=4),
                    form_id="demo",
                    funnel_id="digital-sales",
                    email=f"{lead.hex[:10]}@example.com",
                    captured_at=at,
                    utm=Utm(source=source, medium="x", campaign="y"),
                )
            )
            events.append(_stage(lead, "awareness", None, at))
            leaking = source == "google" and 8 <= days_ago <= 14
            if rng.random() < (LEAKING_RATE if leaking else BASE_RATE):
                later = at + timedelta(hours=rng.randrange(1, 20))
                events.append(_stage(lead, "interest", "awareness", later))
    return events


def _stage(lead: UUID, stage: str, prev: str | None, at: datetime) -> StageChanged:
    return StageChanged(
        lead_id=lead,
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=prev,
        to_stage=stage,
        to_stage_position=STAGES.index(stage),
        reason="generated",
        changed_at=at,
    )


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as server:
        yield server


async def _inbox(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM reporting.inbox"))
    finally:
        await conn.close()


async def test_a_leak_travels_from_the_events_to_a_delivered_signed_task(
    module_infra: Stack, receiver: WebhookReceiver
) -> None:
    stack = module_infra
    stack.extra_env.update(
        {
            # First consume everything with the watch idle (its first check, at start, finds
            # too few leads to test), then check every 2 s: the leak is found on the whole data.
            "FUNNEL_LEAK_CHECK_SECONDS": "3600",
            "FUNNEL_OUTBOX_POLL_SECONDS": "0.5",
            "FUNNEL_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            "FUNNEL_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
            "FUNNEL_WEBHOOK_SIGNING_SECRET": SECRET,
            "FUNNEL_SALES_TASK_WEBHOOK_URL": receiver.url,
        }
    )
    events = _history(datetime.now(UTC))
    await stack._run_command("reporting", "migrate")
    await stack._run_command("notifier", "migrate")
    await publish(stack, events)
    stack.start_service("reporting")
    stack.start_service("notifier")
    try:
        await stack.wait_service_ready("reporting")
        await stack.wait_service_ready("notifier")
        await eventually(lambda: _inbox(stack), lambda n: n >= len(events), timeout=180)
        assert await _inbox(stack) >= len(events)
        stack.stop_service("reporting")
        stack.extra_env["FUNNEL_LEAK_CHECK_SECONDS"] = "2"
        stack.start_service("reporting")
        await stack.wait_service_ready("reporting")

        def google_leak(body: dict[str, Any]) -> list[dict[str, Any]]:
            return [
                i
                for i in body["items"]
                if (i["from_stage"], i["to_stage"], i["segment"])
                == ("awareness", "interest", "source:google")
                and i["resolved_at"] is None
            ]

        body = await eventually(
            lambda: get(stack, "/v1/funnels/digital-sales/leaks"),
            lambda b: len(google_leak(b)) == 1,
            timeout=120,
        )
        [leak] = google_leak(body)
        assert 0.55 <= leak["baseline_rate"] <= 0.65
        assert leak["current_rate"] <= 0.2
        assert leak["p_value"] < 0.05 / (91 * 2)
        assert leak["baseline_entered"] == 28 * 20
        assert leak["current_entered"] == 7 * 20
        # The newsletter's step did not move: no leak for it.
        assert not [i for i in body["items"] if i["segment"] == "source:newsletter"]

        def delivered() -> list[dict[str, Any]]:
            bodies = [json.loads(r.body) for r in receiver.received]
            return [b for b in bodies if b.get("task", {}).get("leak_id") == leak["leak_id"]]

        await eventually(lambda: _async(delivered()), lambda found: len(found) == 1, timeout=120)
        [payload] = delivered()
        request = next(r for r in receiver.received if json.loads(r.body) == payload)
        timestamp = int(request.headers["x-funnel-timestamp"])
        assert verify(SECRET, timestamp, request.body, request.headers["x-funnel-signature"])
        task = payload["task"]
        assert (task["playbook"], task["funnel_id"], task["stage"]) == (
            "leak-alert",
            "digital-sales",
            "interest",
        )
        assert task["title"].startswith("Funnel leak")
        assert task["lead_id"] is None  # the team's task: no person's

        # Listed where the sales team sees its tasks, as the team's task about the leak...
        listed = await _notifier(stack, "/v1/tasks", status="open")
        [team] = [t for t in listed["items"] if t["leak_id"] == leak["leak_id"]]
        assert (team["lead_id"], team["playbook"], team["funnel_id"], team["stage"]) == (
            None,
            "leak-alert",
            "digital-sales",
            "interest",
        )
        assert (await _notifier(stack, "/v1/tasks", lead_id=leak["leak_id"]))["items"] == []
        # ...and, once reporting has consumed every task event, in no person's timeline.
        await eventually(
            lambda: _task_events(stack), lambda counts: counts[0] >= counts[1] >= 1, timeout=120
        )
        assert (
            await _sql(
                stack,
                "SELECT count(*) FROM reporting.timeline_timeline"
                " WHERE lead_id = $1 OR fields ->> 'playbook' = 'leak-alert'",
                UUID(leak["leak_id"]),
            )
            == 0
        )
        # Nor a person's state: the team's task is about a funnel.
        assert (
            await _sql(
                stack,
                "SELECT count(*) FROM reporting.lead_states WHERE lead_id = $1",
                UUID(leak["leak_id"]),
            )
            == 0
        )
        async with httpx.AsyncClient(
            base_url=stack.url("reporting"),
            headers={"Authorization": f"Bearer {stack.admin_api_key}"},
        ) as client:
            response = await client.get(f"/v1/leads/{leak['leak_id']}/timeline")
        assert response.status_code == 404, response.text

        # The dashboard marks it, in real headless Chromium.
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                page = await browser.new_page()
                errors = collect_errors(page)
                await page.goto(f"{stack.url('reporting')}/dashboard#key={stack.admin_api_key}")
                await wait_for_js(page, "Number(document.body.dataset.loaded || 0) > 0")
                marked = page.locator(f'#leak-alerts [data-leak="{leak["leak_id"]}"]')
                assert await marked.count() == 1
                text = await marked.inner_text()
                assert "awareness → interest" in text
                assert "source:google" in text
                labels = await page.evaluate(
                    "(() => { const o = echarts.getInstanceByDom(document.getElementById("
                    "'funnel-chart')).getOption(); return o.yAxis[0].data.map("
                    "o.yAxis[0].axisLabel.formatter); })()"
                )
                assert labels == ["awareness", "⚠ interest"]
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "reporting-dashboard-leak.png"))
                assert errors == []
            finally:
                await browser.close()
    finally:
        stack.stop_service("notifier")
        stack.stop_service("reporting")
        # The services' logs, kept for a look after the run (the stack's folder is removed).
        shutil.copytree(stack.logs, ARTIFACTS / "leak-alert-e2e", dirs_exist_ok=True)


async def _async(value: Any) -> Any:
    return value


async def _notifier(stack: Stack, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(
        base_url=stack.url("notifier"),
        headers={"Authorization": f"Bearer {stack.admin_api_key}"},
        timeout=30,
    ) as client:
        response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def _sql(stack: Stack, query: str, *args: Any) -> int:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        return int(await conn.fetchval(query, *args))
    finally:
        await conn.close()


async def _task_events(stack: Stack) -> tuple[int, int]:
    """Task events reporting has projected, and tasks the notifier has made."""
    projected = await _sql(
        stack,
        "SELECT count(*) FROM reporting.inbox WHERE event_type = 'funnel.task.updated.v1'",
    )
    return projected, await _sql(stack, "SELECT count(*) FROM notifier.tasks")
