"""A form's funnel must exist: asked of stage-tracker (which owns funnels) when a form is saved.

Without the check, a form naming a misspelt or unpublished funnel would take leads that the
tracker can only dead-letter: captured, but never in any stage. With FUNNEL_TRACKER_URL set,
saving such a form is refused (422 naming `funnel_id`); while the tracker cannot answer, it is
refused with 503 and Retry-After rather than saved unchecked. Unset (a single service run
alone, tests), forms are saved unchecked. Submissions never wait on this call (decision 0019).
"""

from __future__ import annotations

import httpx

from funnel_servicekit.problems import Problem
from lead_intake.api.context import invalid
from lead_intake.settings import IntakeSettings


async def check_funnel(settings: IntakeSettings, funnel_id: str) -> None:
    """Return when `funnel_id` has a published version; else raise the Problem to answer."""
    if not settings.tracker_url:
        return
    key = settings.tracker_api_key.get_secret_value() if settings.tracker_api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with httpx.AsyncClient(
            base_url=settings.tracker_url, headers=headers, timeout=settings.tracker_timeout_seconds
        ) as client:
            response = await client.get(f"/v1/funnels/{funnel_id}")
    except httpx.TransportError as exc:
        raise _unavailable(f"stage-tracker unreachable ({type(exc).__name__})") from exc
    if response.status_code == 404:
        raise invalid(
            [{"field": "funnel_id", "message": "no published funnel with this id"}],
            "Unknown funnel",
        )
    if response.status_code != 200:
        raise _unavailable(f"stage-tracker answered {response.status_code}")


def _unavailable(why: str) -> Problem:
    return Problem(
        503,
        "Cannot check the funnel now",
        f"{why}; the form was not saved, try again shortly",
        type_="urn:funnel:problem:dependency-unavailable",
        headers={"Retry-After": "5"},
    )
