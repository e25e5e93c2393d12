"""`POST /v1/activities`: what people do, from sites (a form's public key) or internal systems."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from funnel_servicekit.auth import Principal
from funnel_servicekit.outbox import enqueue
from funnel_servicekit.problems import Problem
from lead_intake import intake_metrics
from lead_intake.activities import ActivityBatch, ActivityIn, activity_event
from lead_intake.api.context import Intake, client_ip, intake, invalid, validation_problem
from lead_intake.api.cors import cors_headers, preflight_headers, with_cors
from lead_intake.body import read_json
from lead_intake.forms import Form
from lead_intake.store import activities as store
from lead_intake.store import forms as forms_store

router = APIRouter(tags=["activities"])
PUBLIC_KEY_HEADER = "x-funnel-key"


class ActivitiesAccepted(BaseModel):
    accepted: int
    duplicates: int
    pending: int
    activity_ids: list[UUID]


@router.options("/v1/activities", include_in_schema=False)
async def activities_preflight(request: Request) -> Response:
    """CORS preflight for beacons; the form's origins are checked on the post itself."""
    origin = request.headers.get("origin")
    headers = preflight_headers({"Access-Control-Allow-Origin": origin} if origin else {})
    return Response(status_code=204, headers={**headers, "Vary": "Origin"})


@router.post("/v1/activities", status_code=202, response_model=ActivitiesAccepted)
async def record_activities(
    request: Request,
    key: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="A form's public key (beacons)."),
    ] = None,
) -> Response:
    """Record up to 500 activities; each is emitted once its person is known."""
    ctx = intake(request)
    form, cors = await _caller(ctx, request, key)
    try:
        payload = await read_json(request, ctx.settings.max_activity_body_bytes)
        try:
            batch = ActivityBatch.model_validate(payload)
        except ValidationError as exc:
            raise validation_problem(exc, "Invalid activities") from None
        if form is not None:
            _public_rules(batch)
        result = await _record(ctx, batch, form)
        return JSONResponse(result.model_dump(mode="json"), status_code=202, headers=cors)
    except Problem as problem:
        raise with_cors(problem, cors) from None


async def _caller(
    ctx: Intake, request: Request, key: str | None
) -> tuple[Form | None, dict[str, str]]:
    """An internal key with leads:write, or a form's public key (rate limited, CORS checked)."""
    public_key = request.headers.get(PUBLIC_KEY_HEADER) or key
    if request.headers.get("authorization") or not public_key:
        principal: Principal = await request.app.state.auth.principal(request)
        if "leads:write" not in principal.scopes:
            raise Problem(
                403, "Missing scope", "this call needs leads:write",
                type_="urn:funnel:problem:forbidden",
            )  # fmt: skip
        return None, {}
    async with ctx.pool.acquire() as conn:
        form = await forms_store.get_form_by_public_key(conn, public_key)
    if form is None:
        raise Problem(
            401,
            "Invalid public key",
            "no form has this public key",
            type_="urn:funnel:problem:unauthorized",
            errors=[{"field": "key", "message": "unknown public key"}],
        )
    cors = cors_headers(request, form)
    try:
        await ctx.rate_limits.check(form, client_ip(request), scope="activities")
    except Problem as problem:
        intake_metrics.RATE_LIMITED.labels("activities").inc()
        raise with_cors(problem, cors) from None
    return form, cors


def _public_rules(batch: ActivityBatch) -> None:
    """A public key is in every page's source: it may only speak for anonymous visitors."""
    errors = [
        {"field": f"activities.{i}.{name}", "message": "a public key may only name visitor_id"}
        for i, a in enumerate(batch.activities)
        for name in ("lead_id", "email")
        if getattr(a, name) is not None
    ]
    errors += [
        {"field": f"activities.{i}.visitor_id", "message": "required with a public key"}
        for i, a in enumerate(batch.activities)
        if a.visitor_id is None
    ]
    if errors:
        raise invalid(errors, "Invalid activities")


async def _record(ctx: Intake, batch: ActivityBatch, form: Form | None) -> ActivitiesAccepted:
    now = datetime.now(UTC)
    items = batch.activities
    accepted = duplicates = pending = 0
    ids: list[UUID] = []
    async with ctx.pool.acquire() as conn, conn.transaction():
        by_email = await store.leads_by_email(conn, sorted({a.email for a in items if a.email}))
        known = await store.existing_leads(conn, sorted({a.lead_id for a in items if a.lead_id}))
        visitors = await store.leads_of_visitors(
            conn, sorted({a.visitor_id for a in items if a.visitor_id})
        )
        lead_ids = [_resolve(i, a, by_email, known, visitors) for i, a in enumerate(items)]
        errors = [e for e in lead_ids if isinstance(e, dict)]
        if errors:
            raise invalid(errors, "Unknown people")
        for activity, lead_id in zip(items, lead_ids, strict=True):
            assert not isinstance(lead_id, dict)
            stored = store.StoredActivity(
                id=activity.id or uuid4(),
                lead_id=lead_id,
                visitor_id=activity.visitor_id,
                activity_type=activity.type,
                occurred_at=activity.occurred_at,
                recorded_at=now,
                order_id=activity.order_id,
                details=activity.details(),
            )
            ids.append(stored.id)
            if not await store.insert_activity(conn, stored, form.id if form else None):
                duplicates += 1
                continue
            accepted += 1
            if lead_id is None:
                pending += 1
                continue
            event = activity_event(
                activity_id=stored.id,
                lead_id=lead_id,
                activity_type=stored.activity_type,
                occurred_at=stored.occurred_at,
                recorded_at=now,
                visitor_id=stored.visitor_id,
                order_id=stored.order_id,
                details=stored.details,
            )
            await enqueue(conn, ctx.outbox.schema, event, source=ctx.outbox.source)
    return ActivitiesAccepted(
        accepted=accepted, duplicates=duplicates, pending=pending, activity_ids=ids
    )


def _resolve(
    index: int,
    activity: ActivityIn,
    by_email: dict[str, UUID],
    known: set[UUID],
    visitors: dict[str, UUID],
) -> UUID | dict[str, Any] | None:
    """The lead an activity belongs to; None while its visitor is anonymous; else an error."""
    if activity.lead_id is not None:
        if activity.lead_id in known:
            return activity.lead_id
        return {"field": f"activities.{index}.lead_id", "message": "no such lead"}
    if activity.email is not None:
        if activity.email in by_email:
            return by_email[activity.email]
        return {"field": f"activities.{index}.email", "message": "no lead with this email"}
    assert activity.visitor_id is not None
    return visitors.get(activity.visitor_id)
