"""Public links in emails: unsubscribe (page and RFC 8058 one-click), open pixel, click redirect.

No login: each link is a signed token (see notifier/links.py); a forged or edited one is a 404.
Each is rate limited per client IP (FUNNEL_TRACKING_RATE_LIMIT_PER_IP).
"""

from __future__ import annotations

import base64
import html

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from funnel_servicekit.problems import Problem
from notifier.deps import Runtime, limit_link_requests
from notifier.links import BadLink, LinkSigner
from notifier.tracking import service

# Every public link counts against its caller's IP before any token is read (429 beyond).
router = APIRouter(tags=["public links"], dependencies=[Depends(limit_link_requests)])
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# The unsubscribe pages: no script at all, their own form only, never in another site's
# frame (a button a framing page could trick a click on).
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _signer(runtime: Runtime) -> LinkSigner:
    return LinkSigner.of(runtime.settings)


def _not_found(exc: BadLink) -> Problem:
    return Problem(404, "Unknown link", str(exc), type_="urn:funnel:problem:not-found")


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""


@router.get("/t/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, runtime: Runtime) -> HTMLResponse:
    """The unsubscribe page: one button (a GET changes nothing, so link scanners cannot)."""
    try:
        link = _signer(runtime).read_unsubscribe(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    category = html.escape(link.target)
    form = (
        f'<form method="post"><input type="hidden" name="source" value="unsubscribe-link">'
        f'<button type="submit">Unsubscribe from {category} emails</button></form>'
    )
    page = _PAGE.format(
        title="Unsubscribe", text=f"Stop receiving {category} emails from us?", form=form
    )
    return HTMLResponse(page, headers=PAGE_HEADERS)


@router.post("/t/u/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, runtime: Runtime) -> HTMLResponse:
    """Unsubscribe from the link's category: RFC 8058 one-click, or the page's button."""
    try:
        link = _signer(runtime).read_unsubscribe(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    body = (await request.body())[:1024].decode("utf-8", "replace")
    source = "one-click" if "List-Unsubscribe=One-Click" in body else "unsubscribe-link"
    await service.unsubscribe(runtime.transactions, link, source)
    page = _PAGE.format(
        title="Unsubscribed",
        text=f"You will get no more {html.escape(link.target)} emails from us.",
        form="",
    )
    return HTMLResponse(page, headers=PAGE_HEADERS)


@router.get("/t/o/{token}")
async def open_pixel(token: str, runtime: Runtime) -> Response:
    """The open pixel: a 1x1 GIF; the first load emits funnel.touch.opened."""
    try:
        link = _signer(runtime).read_open(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    await service.record_open(runtime.transactions, link.touch_id, link.lead_id)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/t/c/{token}")
async def click(token: str, runtime: Runtime) -> RedirectResponse:
    """A tracked link: redirect to the signed target only; the first click emits clicked."""
    try:
        link = _signer(runtime).read_click(token)
    except BadLink as exc:
        raise _not_found(exc) from exc
    await service.record_click(runtime.transactions, link)
    return RedirectResponse(link.target, status_code=302, headers=NO_STORE)
