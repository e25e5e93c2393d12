"""stage-tracker's HTTP API for leads: the journey, and manual moves by people."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from funnel_servicekit.problems import Problem, field_problem, invalid, not_found
from stage_tracker.deps import Conn, Reader, Runtime, Writer
from stage_tracker.moves import service
from stage_tracker.moves.models.commands import MoveCommand
from stage_tracker.moves.models.machine import MalformedMove, Refused

router = APIRouter(tags=["leads"])


def _unknown_lead(lead_id: UUID) -> Problem:
    return not_found("lead", "lead_id", str(lead_id), type_="urn:funnel:problem:unknown-lead")


def _refused(refused: Refused) -> Problem:
    """409 when the funnel does not allow the move from where the lead is; 422 when the move
    names a stage the funnel does not have."""
    if isinstance(refused, MalformedMove):
        return invalid("to_stage", refused.reason, title="Unknown stage")
    return field_problem(
        409,
        "Move not allowed",
        refused.reason,
        type_="urn:funnel:problem:move-refused",
        field="to_stage",
        message=refused.reason,
    )


@router.get("/v1/leads/{lead_id}/journey")
async def get_journey(lead_id: UUID, _: Reader, conn: Conn) -> dict[str, Any]:
    """A lead's current stage, score and temperature, and every transition with its cause."""
    journey = await service.journey(conn, lead_id)
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
    lead_id: UUID, body: TransitionRequest, _: Writer, runtime: Runtime
) -> dict[str, Any]:
    """Move a lead by hand, with a reason; 409 with the reason when its funnel does not allow it."""
    command = MoveCommand.manual(
        lead_id,
        body.to_stage,
        reason=body.reason,
        actor=body.actor,
        at=datetime.now(UTC),
        funnel_version=body.funnel_version,
    )
    try:
        move = await service.move_lead(runtime.transactions, runtime.context.registry, command)
    except service.UnknownLead:
        raise _unknown_lead(lead_id) from None
    except service.UnknownVersion as exc:
        raise invalid("funnel_version", str(exc), title="Unknown funnel version") from None
    except Refused as refused:
        raise _refused(refused) from None
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
