"""embed.js in real headless Chromium: a landing page served locally posts to lead-intake.

lead-intake runs as its own process on the real PostgreSQL and Kafka; the landing page is
served from another port (another origin), so CORS and its preflight are exercised for real.
Chromium is Debian's, started with the flags this environment needs and a fresh profile, and
driven over the DevTools protocol by Playwright.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from funnel_devstack.ports import free_port
from funnel_devstack.stack import Stack
from tests.e2e.intake_process import intake_with_tracker
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MESSAGE = "Thanks! Check your inbox."


@pytest.fixture(scope="module")
async def intake_url(module_infra: Stack) -> AsyncIterator[str]:
    await module_infra.prepare()
    async with intake_with_tracker(module_infra) as url:
        yield url


def _page(intake: str, form_id: str = "landing") -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Spring sale</title>
<script src="{intake}/v1/forms/{form_id}/embed.js" defer></script></head>
<body><h1>Spring sale</h1>
<form data-funnel-form="{form_id}" action="{intake}/v1/forms/{form_id}/submissions" method="post">
  <input name="email" type="email" required>
  <input name="first_name">
  <select name="plan"><option value="basic">Basic</option><option value="pro">Pro</option></select>
  <label><input type="checkbox" name="consent" value="on"> Send me offers</label>
  <button type="submit">Get the offer</button>
</form></body></html>"""


@contextlib.contextmanager
def landing_server(intake: str, form_id: str = "landing") -> Iterator[str]:
    """The site: every path answers the landing page (UTM tags ride on the query)."""
    body = _page(intake, form_id).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="funnel-chromium-"))
    port = free_port()
    proc = subprocess.Popen(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        await eventually(lambda: _devtools_up(endpoint), bool, timeout=30, interval=0.2)
        async with async_playwright() as pw:
            browser = await pw.chromium.connect_over_cdp(endpoint)
            try:
                yield browser
            finally:
                await browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_up(endpoint: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(f"{endpoint}/json/version")).status_code == 200
    except httpx.HTTPError:
        return False


async def _create_form(
    stack: Stack, intake: str, origin: str, form_id: str = "landing", **settings: Any
) -> None:
    async with httpx.AsyncClient(
        base_url=intake, headers={"Authorization": f"Bearer {stack.admin_api_key}"}
    ) as c:
        response = await c.put(
            f"/v1/forms/{form_id}",
            json={
                **settings,
                "funnel_id": "digital-sales",
                "name": "Landing",
                "allowed_origins": [origin],
                "fields": [{"name": "plan", "type": "select", "options": ["basic", "pro"]}],
                "consent_text": "Send me offers",
                "thank_you_message": MESSAGE,
            },
        )
        assert response.status_code in (200, 201), response.text


async def _row(stack: Stack, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


async def test_the_embedded_form_captures_a_lead_with_its_utm_without_leaving_the_page(
    module_infra: Stack, intake_url: str
) -> None:
    with landing_server(intake_url) as site:
        await _create_form(module_infra, intake_url, site)
        async with chromium() as browser:
            context = await browser.new_context()
            page = await context.new_page()
            landing = f"{site}/spring?utm_source=newsletter&utm_medium=email&utm_campaign=november"
            await page.goto(landing)
            await page.wait_for_function(
                "document.querySelector('input[name=utm_source]')?.value === 'newsletter'"
            )
            visitor_id = await page.input_value("input[name=visitor_id]")
            await page.fill("input[name=email]", "  Browser.Person@Example.com ")
            await page.fill("input[name=first_name]", "Ada")
            await page.select_option("select[name=plan]", "pro")
            await page.check("input[name=consent]")
            await page.click("button[type=submit]")
            note = page.locator(".funnel-thank-you")
            await note.wait_for(timeout=15_000)
            assert await note.text_content() == MESSAGE
            assert page.url == landing  # submitted in place
            await context.close()

    lead = await _row(
        module_infra, "SELECT * FROM intake.leads WHERE email = $1", "browser.person@example.com"
    )
    assert lead is not None
    assert lead["first_name"] == "Ada"
    assert lead["consent"]["text"] == "Send me offers"
    sub = await _row(
        module_infra, "SELECT * FROM intake.submissions WHERE lead_id = $1", lead["id"]
    )
    assert sub["utm"] == {"source": "newsletter", "medium": "email", "campaign": "november"}
    assert sub["landing_page"] == landing
    assert sub["visitor_id"] == visitor_id
    assert sub["custom_fields"] == {"plan": "pro"}
    assert "Chrome" in (sub["user_agent"] or "")
    assert sub["ip_truncated"] == "127.0.0.0/24"

    # The page view beaconed before the form is the lead's too, with its UTM tags.
    async def page_view() -> Any:
        return await _row(
            module_infra,
            "SELECT * FROM intake.activities WHERE visitor_id = $1 AND activity_type = 'page_view'",
            visitor_id,
        )

    view = await eventually(
        page_view, lambda r: r is not None and r["lead_id"] is not None, timeout=20
    )
    assert view["lead_id"] == lead["id"]
    assert view["details"]["utm"] == {
        "source": "newsletter",
        "medium": "email",
        "campaign": "november",
    }


async def test_without_javascript_the_same_form_still_posts(
    module_infra: Stack, intake_url: str
) -> None:
    with landing_server(intake_url) as site:
        await _create_form(module_infra, intake_url, site)
        async with chromium() as browser:
            context = await browser.new_context(java_script_enabled=False)
            page = await context.new_page()
            await page.goto(f"{site}/plain")
            await page.fill("input[name=email]", "no-js@example.com")
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert page.url == f"{intake_url}/v1/forms/landing/submissions"
            assert MESSAGE in await page.content()
            await context.close()

    lead = await _row(module_infra, "SELECT id FROM intake.leads WHERE email = 'no-js@example.com'")
    assert lead is not None  # the answer came after the commit: nothing to wait for


FIRST = "localStorage.getItem('funnel_first_touch')"


async def test_the_first_touch_is_kept_across_visits_for_the_attribution_days(
    module_infra: Stack, intake_url: str
) -> None:
    with landing_server(intake_url) as site:
        await _create_form(module_infra, intake_url, site)
        async with chromium() as browser:
            context = await browser.new_context()
            first = await context.new_page()
            await first.goto(f"{site}/ep1?utm_source=podcast&utm_campaign=ep1")
            await first.wait_for_function(f"{FIRST} !== null")
            await first.close()
            # Days later, another visit (a new tab: nothing in its session) from an ad.
            later = await context.new_page()
            await later.goto(f"{site}/sale?utm_source=google&utm_campaign=sale")
            await later.wait_for_function(
                "document.querySelector('input[name=utm_source]')?.value === 'podcast'"
            )
            assert await later.input_value("input[name=utm_campaign]") == "ep1"
            await later.fill("input[name=email]", "first.touch@example.com")
            await later.click("button[type=submit]")
            await later.locator(".funnel-thank-you").wait_for(timeout=15_000)
            # Past the attribution days, the kept touch is forgotten: this visit's counts.
            stale = "Date.now() - 31 * 86400000"
            await later.evaluate(
                "localStorage.setItem('funnel_first_touch', JSON.stringify("
                f"{{utm: {{utm_source: 'old'}}, at: {stale}}}))"
            )
            expired = await context.new_page()
            await expired.goto(f"{site}/x?utm_source=partner")
            await expired.wait_for_function(
                "document.querySelector('input[name=utm_source]')?.value === 'partner'"
            )
            kept = json.loads(await expired.evaluate(FIRST))
            assert kept["utm"] == {"utm_source": "partner"}
            await context.close()
    lead = await _row(
        module_infra, "SELECT id FROM intake.leads WHERE email = $1", "first.touch@example.com"
    )
    sub = await _row(
        module_infra, "SELECT utm FROM intake.submissions WHERE lead_id = $1", lead["id"]
    )
    assert sub["utm"] == {"source": "podcast", "campaign": "ep1"}


async def test_the_first_touch_is_kept_only_with_the_consent_the_form_requires(
    module_infra: Stack, intake_url: str
) -> None:
    with landing_server(intake_url, "consented") as site:
        await _create_form(module_infra, intake_url, site, "consented", consent_required=True)
        async with chromium() as browser:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{site}/ep2?utm_source=podcast")
            await page.wait_for_function(
                "document.querySelector('input[name=utm_source]')?.value === 'podcast'"
            )
            assert await page.evaluate(FIRST) is None  # no consent: nothing kept
            await page.check("input[name=consent]")
            await page.wait_for_function(f"{FIRST} !== null")
            assert json.loads(await page.evaluate(FIRST))["utm"] == {"utm_source": "podcast"}
            await context.close()
