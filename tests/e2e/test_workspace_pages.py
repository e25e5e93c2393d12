"""The workspace pages in real headless Chromium, on the whole stack (four services as real
processes, real PostgreSQL and Kafka), with ana's named key (leads, pii:read, reports):

from the dashboard's `desire` stage to its lead list, to a lead; log a call and see it in the
timeline; take ownership; finish the task the hot lead got; move the lead and see the stage
counts of the dashboard change; and a move refused with 412, in words, when ben moved the lead
meanwhile; the list names each lead for ana, finds a person by the start of a name or email,
and shows ben (no pii:read) the leads without who they are. Screenshots are kept in
tests/artifacts/workspace/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.browser import collect_errors, wait_for_js
from tests.e2e.waiting import eventually

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
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "workspace"
FUNNEL = "digital-sales"
CALL_TEXT = "Called Ada: wants the pro plan, sends the order form Friday"


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("workspace")
    try:
        yield stack
    finally:
        stop_stack(stack, "workspace")


def _api(stack: Stack, service: str, key: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.url(service),
        headers={"Authorization": f"Bearer {key or stack.admin_api_key}"},
        timeout=30,
    )


async def _capture(stack: Stack, email: str, first_name: str, *, test: bool = False) -> str:
    body: dict[str, Any] = {"email": email, "first_name": first_name, "last_name": "Lovelace"}
    # A test lead takes an admin key (forms:admin).
    headers = {"Authorization": f"Bearer {stack.admin_api_key}"} if test else {}
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30) as c:
        response = await c.post(
            "/v1/forms/demo/submissions",
            json=body | ({"test": True} if test else {}),
            headers=headers,
        )
    assert response.status_code == 202, response.text
    return str(response.json()["lead_id"])


async def _activities(stack: Stack, lead_id: str, *types: str) -> None:
    now = datetime.now(UTC).isoformat()
    body = {"activities": [{"type": t, "occurred_at": now, "lead_id": lead_id} for t in types]}
    async with _api(stack, "lead-intake") as c:
        response = await c.post("/v1/activities", json=body)
    assert response.status_code == 202, response.text


async def _journey(stack: Stack, lead_id: str) -> httpx.Response:
    async with _api(stack, "stage-tracker") as c:
        return await c.get(f"/v1/leads/{lead_id}/journey")


async def _stage(stack: Stack, lead_id: str) -> str | None:
    response = await _journey(stack, lead_id)
    if response.status_code != 200:
        return None
    body = response.json()
    return str(body.get("stage") or body.get("current_stage"))


def _stage_of(stack: Stack, lead_id: str) -> Callable[[], Awaitable[str | None]]:
    return lambda: _stage(stack, lead_id)


async def _snapshot(stack: Stack) -> dict[str, int]:
    async with _api(stack, "reporting") as c:
        response = await c.get(f"/v1/funnels/{FUNNEL}/snapshot")
    if response.status_code != 200:
        return {}
    return {s["stage"]: s["leads"] for s in response.json()["stages"]}


async def _open_tasks(stack: Stack, lead_id: str) -> list[dict[str, Any]]:
    async with _api(stack, "notifier") as c:
        response = await c.get("/v1/tasks", params={"lead_id": lead_id, "status": "open"})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _timeline(stack: Stack, lead_id: str) -> list[dict[str, Any]]:
    async with _api(stack, "reporting") as c:
        response = await c.get(f"/v1/leads/{lead_id}/timeline")
    return list(response.json()["items"]) if response.status_code == 200 else []


async def _loaded(page: Page, after: int = 0) -> None:
    await wait_for_js(page, f"Number(document.body.dataset.loaded || 0) > {after}")


async def _text(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _stage_count(page: Page, stage: str) -> int:
    link = page.locator(f'#stages-now a[data-stage="{stage}"] b')
    if await link.count() == 0:
        return 0
    return int((await link.inner_text()).replace(",", ""))


async def test_from_the_dashboard_to_a_lead_log_a_call_take_it_finish_its_task_and_move_it(
    stack: Stack,
) -> None:
    ada = await _capture(stack, "ada.workspace@example.com", "Ada")
    bob = await _capture(stack, "bob.workspace@example.com", "Bob")
    await _capture(stack, "cy.workspace@example.com", "Cy")  # stays in awareness
    # A test lead moves like the others, yet is in no count, no list, no playbook.
    tess = await _capture(stack, "tess.workspace@example.com", "Tess", test=True)
    await _activities(stack, tess, "pricing_viewed")
    # Ada gets hot (a task for sales), Bob only looks at the prices: both reach desire.
    await _activities(stack, ada, "pricing_viewed", "demo_requested", "trial_started")
    await _activities(stack, ada, "checkout_started")
    await _activities(stack, bob, "pricing_viewed")
    for lead in (ada, bob, tess):
        assert await eventually(_stage_of(stack, lead), lambda s: s == "desire")
    counts = await eventually(lambda: _snapshot(stack), lambda s: s.get("desire") == 2)
    assert counts == {"awareness": 1, "desire": 2}
    tasks = await eventually(lambda: _open_tasks(stack, ada), lambda t: len(t) == 1)
    assert [t["title"] for t in tasks] == ["Hot lead: call now"]

    ana = stack.team_keys["ana"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1360, "height": 1000})
            page = await context.new_page()
            errors = collect_errors(page)

            # The dashboard: the stages now, each a link to its leads.
            await page.goto(f"{stack.url('reporting')}/dashboard#key={ana}")
            await _loaded(page)
            assert await _stage_count(page, "desire") == 2
            await _shot(page, "1-dashboard")
            await page.click('#stages-now a[data-stage="desire"]')

            # The stage's lead list: both desire leads, Ada first (highest score), hot.
            await page.wait_for_url("**/dashboard/leads?*")
            await _loaded(page)
            assert "stage=desire" in page.url
            assert "funnel_id=digital-sales" in page.url
            rows = page.locator("#leads tbody tr")
            assert await rows.count() == 2
            assert await rows.nth(0).get_attribute("data-lead") == ada
            assert await _text(page, f'tr[data-lead="{ada}"] .temp') == "hot"
            assert await _text(page, "#whoami") == "ana"
            # Each row says who: ana may read personal data, so lead-intake names them.
            assert await _text(page, f'tr[data-lead="{ada}"] a.lead-link') == "Ada Lovelace"
            assert await _text(page, f'tr[data-lead="{bob}"] a.lead-link') == "Bob Lovelace"
            assert await _text(page, f'tr[data-lead="{ada}"] .sub') == "ada.workspace@example.com"
            # The find box: people by the start of a name or email, each a link to their page.
            await page.fill("#find-q", "ada.w")
            await page.click("#find button[type=submit]")
            await wait_for_js(page, "Number(document.body.dataset.found || 0) > 0")
            assert await page.locator("#found li").count() == 1
            assert await page.locator("#found li").get_attribute("data-lead") == ada
            assert await _text(page, "#found li a.lead-link") == "Ada Lovelace"
            assert await _text(page, "#find-hint") == "1 found"
            await _shot(page, "2-desire-leads")
            # A filter is kept in the URL and changes the list.
            before = int(await page.evaluate("Number(document.body.dataset.loaded)"))
            await page.select_option("#temperature", "hot")
            await _loaded(page, before)
            assert "temperature=hot" in page.url
            assert await rows.count() == 1
            await page.click(f'tr[data-lead="{ada}"] a.lead-link')

            # The lead: who (ana may read contact details), stage, score, the open task.
            await page.wait_for_url(f"**/dashboard/lead?id={ada}")
            await _loaded(page)
            assert await _text(page, "#stage") == "desire"
            assert await _text(page, "#who") == "Ada Lovelace"
            assert await page.locator("#test-lead").is_hidden()
            assert "ada.workspace@example.com" in await _text(page, "#contact")
            assert await page.locator("#tasks li").count() == 1
            assert "Hot lead: call now" in await _text(page, "#tasks")

            # Log a call: it shows in the timeline, recorded as ana's.
            await page.select_option("#log-type", "call_logged")
            await page.select_option("#log-outcome", "interested")
            await page.fill("#log-text", CALL_TEXT)
            await page.click("#log button[type=submit]")
            await page.locator("#log-result.ok").wait_for()
            call = page.locator('#timeline li[data-kind="call_logged"]')
            await call.wait_for(timeout=30_000)
            assert CALL_TEXT in await call.inner_text()
            # The words travel sealed: reporting's timeline holds "*", the page reads them
            # from lead-intake, which holds the person's key (decision 0054).
            [logged] = [i for i in await _timeline(stack, ada) if i["kind"] == "call_logged"]
            assert logged["text"] == "*"
            assert logged["outcome"] == "interested"
            assert logged["actor"] == "ana"

            # Take ownership: the tracker records ana as the owner.
            await page.click("#take")
            await wait_for_js(page, "document.getElementById('owner').textContent === 'ana'")
            assert (await _journey(stack, ada)).json()["owner"] == "ana"

            # Finish the task.
            await page.click("#tasks button.done")
            await page.locator("#task-result.ok").wait_for()
            assert await _open_tasks(stack, ada) == []
            await page.locator("#tasks-empty").wait_for()
            await _shot(page, "3-lead-after-call")

            # Move the lead: desire -> action, by ana, with the reason, in the journey.
            await page.select_option("#move-to", "action")
            await page.fill("#move-reason", "Signed the order form")
            await page.click("#move button[type=submit]")
            await page.locator("#move-result.ok").wait_for()
            assert await _text(page, "#stage") == "action"
            journey = (await _journey(stack, ada)).json()
            last = journey["transitions"][-1]
            assert (last["from_stage"], last["to_stage"]) == ("desire", "action")
            assert last["actor"] == "ana"
            assert last["reason"] == "Signed the order form"
            assert "desire → action" in await _text(page, "#journey li:first-child")

            # The dashboard's stage counts follow.
            await page.goto(f"{stack.url('reporting')}/dashboard")
            await _loaded(page)
            await eventually(lambda: _stage_count(page, "action"), lambda n: n == 1, timeout=30)
            assert await _stage_count(page, "action") == 1
            assert await _stage_count(page, "desire") == 1
            await _shot(page, "4-dashboard-after-move")

            # The whole funnel's leads, one a page: "More" walks the tracker's cursor.
            await page.goto(f"{stack.url('reporting')}/dashboard/leads?funnel_id={FUNNEL}&limit=1")
            await _loaded(page)
            for shown in (2, 3):
                before = int(await page.evaluate("Number(document.body.dataset.loaded)"))
                await page.click("#more")
                await _loaded(page, before)
                assert await page.locator("#leads tbody tr").count() == shown
            order = await page.eval_on_selector_all(
                "#leads tbody tr", "rows => rows.map(r => r.dataset.lead)"
            )
            assert order[:2] == [ada, bob]  # by score now: 60, 10, then Cy's 0
            assert await page.locator("#more").is_hidden()

            # The test lead's own page says what it is.
            await page.goto(f"{stack.url('reporting')}/dashboard/lead?id={tess}")
            await _loaded(page)
            assert await _text(page, "#who") == "Tess Lovelace"
            assert await page.locator("#test-lead").is_visible()
            assert "Test lead" in await _text(page, "#test-lead")
            assert await _text(page, "#stage") == "desire"
            await _shot(page, "4b-test-lead")

            # Bob's page is open when ben moves him: ana's move is refused, in words.
            await page.goto(f"{stack.url('reporting')}/dashboard/lead?id={bob}")
            await _loaded(page)
            assert await _text(page, "#stage") == "desire"
            seen = await _journey(stack, bob)
            async with _api(stack, "stage-tracker", stack.team_keys["ben"]) as c:
                moved = await c.post(
                    f"/v1/leads/{bob}/transitions",
                    json={"to_stage": "action", "reason": "paid by phone"},
                    headers={"If-Match": seen.headers["etag"]},
                )
            assert moved.status_code == 201, moved.text
            await page.select_option("#move-to", "action")
            await page.fill("#move-reason", "Ready to buy")
            await page.click("#move button[type=submit]")
            refused = page.locator("#move-result.bad")
            await refused.wait_for()
            text = await refused.inner_text()
            assert "Someone else changed this lead meanwhile" in text
            assert "it is now in action" in text
            assert await _text(page, "#stage") == "action"  # shown as it is now
            journey = (await _journey(stack, bob)).json()
            assert [t["to_stage"] for t in journey["transitions"]][-2:] == ["desire", "action"]
            assert journey["transitions"][-1]["actor"] == "ben"
            await _shot(page, "5-move-refused-412")

            # Ben may not read personal data: his list shows the leads, not who they are.
            ben_context = await browser.new_context(viewport={"width": 1360, "height": 1000})
            ben_page = await ben_context.new_page()
            collect_errors(ben_page, errors)
            ben = stack.team_keys["ben"]
            await ben_page.goto(
                f"{stack.url('reporting')}/dashboard/leads?funnel_id={FUNNEL}&stage=action#key={ben}"
            )
            await _loaded(ben_page)
            assert await _text(ben_page, "#whoami") == "ben"
            for lead in (ada, bob):
                assert await _text(ben_page, f'tr[data-lead="{lead}"] a.lead-link') == lead[:8]
            await ben_page.fill("#find-q", "bob.w")
            await ben_page.click("#find button[type=submit]")
            await wait_for_js(ben_page, "Number(document.body.dataset.found || 0) > 0")
            assert await _text(ben_page, "#found li a.lead-link") == bob[:8]
            assert "names need a key with pii:read" in await _text(ben_page, "#find-hint")
            await _shot(ben_page, "6-leads-without-pii-read")

            # Back to desire: the funnel refuses backward moves (409), said in words.
            await page.select_option("#move-to", "desire")
            await page.fill("#move-reason", "Changed their mind")
            await page.click("#move button[type=submit]")
            await wait_for_js(
                page, "document.getElementById('move-result').textContent.includes('not allowed')"
            )
            text = await _text(page, "#move-result")
            assert text.startswith("This move is not allowed: ")
            await _shot(page, "6-move-refused-409")
            assert await _text(page, "#stage") == "action"
            assert len((await _journey(stack, bob)).json()["transitions"]) == len(
                journey["transitions"]
            )
            assert errors == []

            # ben may not read contact details: the page says so, and shows the rest.
            ben_context = await browser.new_context(viewport={"width": 1360, "height": 1000})
            ben_page = await ben_context.new_page()
            url = f"{stack.url('reporting')}/dashboard/lead?id={ada}#key={stack.team_keys['ben']}"
            await ben_page.goto(url)
            await _loaded(ben_page)
            assert await _text(ben_page, "#who") == f"Lead {ada[:8]}"
            assert "pii:read" in await _text(ben_page, "#contact")
            assert "Lovelace" not in await ben_page.content()
            assert await _text(ben_page, "#owner") == "ana"
            assert await _text(ben_page, "#stage") == "action"
            await _shot(ben_page, "7-lead-without-pii-read")
            await ben_context.close()
        finally:
            await browser.close()


async def test_each_services_api_docs_render_from_the_service_alone(stack: Stack) -> None:
    """/docs (Swagger UI) of every service lists its operations in a browser that reaches
    only the stack (no CDN on this machine's network): the pages' files are the service's."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            errors = collect_errors(page)
            for service in ("lead-intake", "stage-tracker", "notifier", "reporting"):
                await page.goto(f"{stack.url(service)}/docs")
                await wait_for_js(page, "document.querySelectorAll('.opblock').length > 0")
                title = await _text(page, ".info .title")
                assert title.startswith(f"Funnel {service}"), title
                shown = await page.locator(".opblock").count()
                spec = await (await page.request.get(f"{stack.url(service)}/openapi.json")).json()
                operations = sum(len(methods) for methods in spec["paths"].values())
                assert shown == operations, service
            await _shot(page, "7-api-docs-offline")
            assert errors == []
        finally:
            await browser.close()
