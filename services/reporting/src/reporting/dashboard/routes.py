"""The dashboard and the workspace pages: static pages and their assets, reading the JSON APIs
with the caller's key.

The pages hold no data and no secret, so they are served without a key; they ask for one (or
take it from the URL fragment, which never reaches a server) and send it with each call. The
workspace pages reach the other services through `/workspace/api/` (reporting.workspace).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.staticfiles import PathLike
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
router = APIRouter(tags=["dashboard"])
NO_CACHE = {"Cache-Control": "no-cache"}
# The pages hold an API key (in the tab's sessionStorage) and show what strangers typed into
# public forms: defence in depth against script injection (docs/decisions/0095). Only the
# pages' own scripts run (no inline script, no eval); inline styles stay allowed (the chart
# library's tooltips carry them); images are the pages' own, data: and blob: (the PNG
# exports); calls and the live stream go to this origin only; no page may frame them.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = {
    **NO_CACHE,
    **NOSNIFF,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",  # a page's URL names a lead
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
}


@router.get("/dashboard", include_in_schema=False)
async def get_dashboard() -> FileResponse:
    """The live funnel dashboard."""
    return FileResponse(STATIC / "dashboard.html", headers=PAGE_HEADERS)


@router.get("/dashboard/leads", include_in_schema=False)
async def get_lead_list() -> FileResponse:
    """A stage's leads (`?funnel_id=&stage=`, filters in the query): score, owner, stalls."""
    return FileResponse(STATIC / "leads.html", headers=PAGE_HEADERS)


@router.get("/dashboard/lead", include_in_schema=False)
async def get_lead_page() -> FileResponse:
    """One lead (`?id=`): who, where from, stage and journey, timeline, tasks, and actions."""
    return FileResponse(STATIC / "lead.html", headers=PAGE_HEADERS)


class _Assets(StaticFiles):
    """The pages' scripts, styles and vendor files, never sniffed as another type."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(NOSNIFF)
        return response


def mount_static(app: FastAPI) -> None:
    app.mount("/dashboard/static", _Assets(directory=STATIC), name="dashboard-static")
