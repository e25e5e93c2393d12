"""Public links in emails: unsubscribe (page and RFC 8058 one-click), open pixel, click redirect.

No login: each link is a signed token (see links.py); a forged or edited one is a 404.
Each is rate limited per client IP (FUNNEL_TRACKING_RATE_LIMIT_PER_IP).
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from funnel_contracts import ConsentChanged, TouchClicked, TouchOpened
from funnel_servicekit.outbox import enqueue
from funnel_servicekit.problems import Problem
from notifier import lead_store, store
from notifier.link_rate_limit import limit_link_requests
from notifier.links import BadLink, LinkSigner

# Every public link counts against its caller's IP before any token is read (429 beyond).
router = APIRouter(tags=["public links"], dependencies=[Depends(limit_link_requests)])
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _signer(request: Request) -> LinkSigner:
    settings = request.app.state.runtime.settings
    return LinkSigner(settings.link_signing_key.get_secret_value(), settings.public_base_url)


def _not_found(exc: BadLink) -> Problem:
    return Problem(404, "Unknown link", str(exc), type_="urn:funnel:problem:not-found")


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""


@router.get("/t/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """The unsubscribe page: one button (a GET changes nothing, so link scanners cannot)."""
    try:
        link = _signer(request).read_unsubscribe(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    category = html.escape(link.category)
    form = (
        f'<form method="post"><input type="hidden" name="source" value="unsubscribe-link">'
        f'<button type="submit">Unsubscribe from {category} emails</button></form>'
    )
    page = _PAGE.format(
        title="Unsubscribe", text=f"Stop receiving {category} emails from us?", form=form
    )
    return HTMLResponse(page, headers=NO_STORE)


@router.post("/t/u/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """Unsubscribe from the link's category: RFC 8058 one-click, or the page's button."""
    try:
        link = _signer(request).read_unsubscribe(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    body = (await request.body())[:1024].decode("utf-8", "replace")
    source = "one-click" if "List-Unsubscribe=One-Click" in body else "unsubscribe-link"
    runtime = request.app.state.runtime
    now = datetime.now(UTC)
    async with runtime.pool.acquire() as conn, conn.transaction():
        if not await lead_store.is_erased(conn, link.lead_id):
            changed = await lead_store.set_consents(
                conn, link.lead_id, [link.category], granted=False, source=source, at=now
            )
            await store.cancel_category(
                conn, link.lead_id, link.category, f"unsubscribed from {link.category}"
            )
            if changed:
                await enqueue(
                    conn,
                    runtime.settings.db_schema,
                    ConsentChanged(
                        lead_id=link.lead_id,
                        category=link.category,
                        granted=False,
                        source=source,
                        touch_id=link.touch_id,
                        changed_at=now,
                    ),
                    source=runtime.settings.service_name,
                )
    page = _PAGE.format(
        title="Unsubscribed",
        text=f"You will get no more {html.escape(link.category)} emails from us.",
        form="",
    )
    return HTMLResponse(page, headers=NO_STORE)


@router.get("/t/o/{token}")
async def open_pixel(token: str, request: Request) -> Response:
    """The open pixel: a 1x1 GIF; the first load emits funnel.touch.opened."""
    try:
        touch_id, lead_id = _signer(request).read_open(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    runtime = request.app.state.runtime
    async with runtime.pool.acquire() as conn, conn.transaction():
        if await store.first_engagement(conn, touch_id, "open"):
            await enqueue(
                conn,
                runtime.settings.db_schema,
                TouchOpened(lead_id=lead_id, touch_id=touch_id, opened_at=datetime.now(UTC)),
                source=runtime.settings.service_name,
            )
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/t/c/{token}")
async def click(token: str, request: Request) -> RedirectResponse:
    """A tracked link: redirect to the signed target only; the first click emits clicked."""
    try:
        link = _signer(request).read_click(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    runtime = request.app.state.runtime
    async with runtime.pool.acquire() as conn, conn.transaction():
        if await store.first_engagement(conn, link.touch_id, "click", link.url):
            await enqueue(
                conn,
                runtime.settings.db_schema,
                TouchClicked(
                    lead_id=link.lead_id,
                    touch_id=link.touch_id,
                    url=link.url,
                    clicked_at=datetime.now(UTC),
                ),
                source=runtime.settings.service_name,
            )
    return RedirectResponse(link.url, status_code=302, headers=NO_STORE)
