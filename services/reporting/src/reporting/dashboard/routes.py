"""The dashboard: one static page and its assets, reading the JSON API with the caller's key.

The page holds no data and no secret, so it is served without a key; it asks for one (or
takes it from the URL fragment, which never reaches a server) and sends it with each call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
router = APIRouter(tags=["dashboard"])


@router.get("/dashboard", include_in_schema=False)
async def get_dashboard() -> FileResponse:
    """The live funnel dashboard."""
    return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})


def mount_static(app: FastAPI) -> None:
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
