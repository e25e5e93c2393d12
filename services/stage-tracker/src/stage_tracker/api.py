"""stage-tracker's HTTP API for leads: the journey, and manual moves by people."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from funnel_contracts import StageMoveRequested
from funnel_servicekit.auth import Principal, require_scopes
from funnel_servicekit.outbox import outbox_record
from funnel_servicekit.problems import Problem
from stage_tracker import store
from stage_tracker.commands import apply_command, command_signal
from stage_tracker.funnel_registry import FunnelRegistry
from stage_tracker.funnels import UnknownFunnel
from stage_tracker.lead_batch import LeadBatch
from stage_tracker.machine import Refused

router = APIRouter(tags=["leads"])


def _unknown_lead(lead_id: UUID) -> Problem:
    return Problem(
        404,
        "Unknown lead",
        f"no lead {lead_id} in any funnel",
        type_="urn:funnel:problem:unknown-lead",
        errors=[{"field": "lead_id", "message": "unknown lead"}],
    )


@router.get("/v1/leads/{lead_id}/journey")
async def get_journey(
    lead_id: UUID,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("leads:read"))],
) -> dict[str, Any]:
    """A lead's current stage, score and temperature, and every transition with its cause."""
    async with request.app.state.runtime.pool.acquire() as conn:
        journey = await store.journey(conn, lead_id)
    if journey is None:
        raise _unknown_lead(lead_id)
    return journey


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_stage: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(min_length=1, max_length=200, description="The person moving the lead.")
    funnel_version: int | None = Field(
        default=None, ge=1, description="Move the lead to this (newer, published) version."
    )


@router.post("/v1/leads/{lead_id}/transitions", status_code=201)
async def move_lead(
    lead_id: UUID,
    body: TransitionRequest,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("leads:write"))],
) -> dict[str, Any]:
    """Move a lead by hand, with a reason; 409 with the reason when its funnel does not allow it."""
    runtime = request.app.state.runtime
    registry: FunnelRegistry = runtime.context.registry
    settings = runtime.settings
    async with runtime.pool.acquire() as conn, conn.transaction():
        leads = await LeadBatch.load(conn, [lead_id])
        state = leads.state(lead_id)
        if state is None:
            raise _unknown_lead(lead_id)
        funnel = await registry.get(conn, state.funnel_id, state.funnel_version)
        target = None
        if body.funnel_version is not None:
            try:
                target = await registry.get(conn, state.funnel_id, body.funnel_version)
            except UnknownFunnel as exc:
                raise Problem(
                    422,
                    "Unknown funnel version",
                    str(exc),
                    type_="urn:funnel:problem:validation",
                    errors=[{"field": "funnel_version", "message": str(exc)}],
                ) from None
        # The move is also a command in the tracker's own input log, so a replay makes it too.
        command = StageMoveRequested(
            lead_id=lead_id,
            funnel_id=state.funnel_id,
            kind="manual",
            to_stage=body.to_stage,
            reason=body.reason,
            actor=body.actor,
            funnel_version=body.funnel_version,
            requested_at=datetime.now(UTC),
        )
        record = outbox_record(command, source=settings.service_name)
        try:
            outcome = apply_command(state, funnel, command, record.envelope.id, target)
        except Refused as refused:
            raise Problem(
                refused.status,
                "Move not allowed" if refused.status == 409 else "Unknown stage",
                refused.reason,
                type_="urn:funnel:problem:move-refused"
                if refused.status == 409
                else "urn:funnel:problem:validation",
                errors=[{"field": "to_stage", "message": refused.reason}],
            ) from None
        leads.record_signal(lead_id, command_signal(record.envelope.id, command), 0.0, applied=True)
        leads.save(lead_id, outcome, target or funnel, source=settings.service_name)
        leads.add(record)
        await leads.flush(conn, settings.db_schema)
    [move] = outcome.moves
    return {
        "lead_id": str(lead_id),
        "funnel_id": move.funnel_id,
        "funnel_version": move.funnel_version,
        "from_stage": move.from_stage,
        "to_stage": move.to_stage,
        "reason": move.reason,
        "actor": move.actor,
        "occurred_at": move.occurred_at,
    }
