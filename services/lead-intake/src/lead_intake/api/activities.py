"""`POST /v1/activities`: what people do, from sites (a form's public key) or internal systems."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID, uuid4

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from funnel_servicekit.auth import Principal
from funnel_servicekit.outbox import enqueue
from funnel_servicekit.problems import Problem
from lead_intake import intake_metrics
from lead_intake.activities import (
    ActivityBatch,
    ItemStatus,
    Known,
    Owner,
    activity_event,
    email_sha256,
    owner,
    unknown_people,
)
from lead_intake.api.context import Intake, client_ip, intake, invalid, validation_problem
from lead_intake.api.cors import cors_headers, preflight_headers, with_cors
from lead_intake.body import read_json
from lead_intake.forms import Form
from lead_intake.store import activities as store
from lead_intake.store import forms as forms_store

router = APIRouter(tags=["activities"])
PUBLIC_KEY_HEADER = "x-funnel-key"
DEADLOCK_RETRIES = 3


class ItemResult(BaseModel):
    id: UUID = Field(description="The activity's id (the sender's, or one given here).")
    status: ItemStatus = Field(
        description="accepted: emitted for its lead; pending: kept until its person is known "
        "(emitted then, with its own time); duplicate: stored already, nothing changed."
    )


class ActivitiesAccepted(BaseModel):
    accepted: int = Field(description="Emitted for their lead now.")
    pending: int = Field(description="Kept until their visitor or email becomes a lead.")
    duplicates: int
    activity_ids: list[UUID] = Field(description="Each item's id, in the batch's order.")
    items: list[ItemResult] = Field(description="What happened to each item, in order.")

    @classmethod
    def of(cls, items: list[ItemResult]) -> ActivitiesAccepted:
        return cls(
            accepted=sum(i.status == "accepted" for i in items),
            pending=sum(i.status == "pending" for i in items),
            duplicates=sum(i.status == "duplicate" for i in items),
            activity_ids=[i.id for i in items],
            items=items,
        )


@router.options("/v1/activities", include_in_schema=False)
async def activities_preflight(request: Request) -> Response:
    """CORS preflight for beacons: with `?key=` (as embed.js sends), only the form's origins."""
    origin = request.headers.get("origin")
    key = request.query_params.get("key")
    if origin and key:
        async with intake(request).pool.acquire() as conn:
            form = await forms_store.get_form_by_public_key(conn, key[:100])
        if form is None:
            raise Problem(401, "Invalid public key", type_="urn:funnel:problem:unauthorized")
        # 403 without any Access-Control-Allow-Origin for an origin the form refuses.
        return Response(status_code=204, headers=preflight_headers(cors_headers(request, form)))
    # A key in the X-Funnel-Key header is not visible here: the post itself checks the origin.
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
    """Record up to 500 activities; each is emitted now or, once its person is known, then."""
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
    attempt = 1
    while True:
        try:
            async with ctx.pool.acquire() as conn, conn.transaction():
                return await _record_in(conn, ctx, batch, form)
        except asyncpg.DeadlockDetectedError:
            # A bulk import creating the same people took their locks in another order;
            # PostgreSQL undid this attempt whole, so trying again is safe.
            if attempt == DEADLOCK_RETRIES:
                raise
            attempt += 1


async def _record_in(
    conn: asyncpg.Connection, ctx: Intake, batch: ActivityBatch, form: Form | None
) -> ActivitiesAccepted:
    now = datetime.now(UTC)
    items = batch.activities
    known = await _known(conn, batch)
    owners = [owner(i, a, known) for i, a in enumerate(items)]
    errors = [o for o in owners if isinstance(o, dict)]
    if errors:
        raise invalid(errors, "Unknown people")
    result: list[ItemResult] = []
    for activity, whose in zip(items, owners, strict=True):
        assert isinstance(whose, Owner)
        stored = store.StoredActivity(
            id=activity.id or uuid4(),
            lead_id=whose.lead_id,
            visitor_id=activity.visitor_id,
            activity_type=activity.type,
            occurred_at=activity.occurred_at,
            recorded_at=now,
            order_id=activity.order_id,
            details=activity.details(),
            pending_email_sha256=whose.waits_for_email,
        )
        if not await store.insert_activity(conn, stored, form.id if form else None):
            result.append(ItemResult(id=stored.id, status="duplicate"))
            continue
        if whose.lead_id is None:
            result.append(ItemResult(id=stored.id, status="pending"))
            continue
        event = activity_event(
            activity_id=stored.id,
            lead_id=whose.lead_id,
            activity_type=stored.activity_type,
            occurred_at=stored.occurred_at,
            recorded_at=now,
            visitor_id=stored.visitor_id,
            order_id=stored.order_id,
            details=stored.details,
        )
        await enqueue(conn, ctx.outbox.schema, event, source=ctx.outbox.source)
        result.append(ItemResult(id=stored.id, status="accepted"))
    return ActivitiesAccepted.of(result)


async def _known(conn: asyncpg.Connection, batch: ActivityBatch) -> Known:
    """Who the batch names; people not known yet are locked and looked up once more.

    The lock makes a lead being created right now for one of them either visible here (so
    the activity is emitted) or wait until this batch commits (and then claim it).
    """
    items = batch.activities
    known = Known(
        frozenset(
            await store.existing_leads(conn, sorted({a.lead_id for a in items if a.lead_id}))
        ),
        await store.leads_by_email(conn, sorted({a.email for a in items if a.email})),
        await store.leads_of_visitors(conn, sorted({a.visitor_id for a in items if a.visitor_id})),
    )
    emails, visitors = unknown_people(batch, known)
    if not emails and not visitors:
        return known
    await store.lock_unknown_people(conn, [email_sha256(e) for e in emails], visitors)
    return Known(
        known.lead_ids,
        known.by_email | await store.leads_by_email(conn, emails),
        known.by_visitor | await store.leads_of_visitors(conn, visitors),
    )
