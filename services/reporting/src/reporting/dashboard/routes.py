"""The dashboard and the workspace pages: static pages and their assets, reading the JSON APIs
with the caller's key.

The pages hold no data and no secret, so they are served without a key; they ask for one (or
take it from the URL fragment, which never reaches a server) and send it with each call. The
workspace pages reach the other services through `/workspace/api/` (reporting.workspace).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
router = APIRouter(tags=["dashboard"])
NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/dashboard", include_in_schema=False)
async def get_dashboard() -> FileResponse:
    """The live funnel dashboard."""
    return FileResponse(STATIC / "dashboard.html", headers=NO_CACHE)


@router.get("/dashboard/leads", include_in_schema=False)
async def get_lead_list() -> FileResponse:
    """A stage's leads (`?funnel_id=&stage=`, filters in the query): score, owner, stalls."""
    return FileResponse(STATIC / "leads.html", headers=NO_CACHE)


@router.get("/dashboard/lead", include_in_schema=False)
async def get_lead_page() -> FileResponse:
    """One lead (`?id=`): who, where from, stage and journey, timeline, tasks, and actions."""
    return FileResponse(STATIC / "lead.html", headers=NO_CACHE)


def mount_static(app: FastAPI) -> None:
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
