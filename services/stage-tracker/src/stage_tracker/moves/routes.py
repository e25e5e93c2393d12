"""stage-tracker's HTTP API for leads: the journey, manual moves and owners, by people.

The actor of a move or an owner change is the calling key's name; a lead's version is its
ETag, and If-Match on a move or an owner change refuses (412) to overwrite a newer state.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, ConfigDict, Field

from funnel_servicekit.problems import Problem, field_problem, invalid, not_found
from stage_tracker.deps import Conn, KeyNames, Reader, Runtime, Writer
from stage_tracker.moves import service
from stage_tracker.moves.models.commands import MoveCommand, OwnerCommand
from stage_tracker.moves.models.machine import MalformedMove, Refused
from stage_tracker.moves.models.versions import IfMatch, VersionMismatch, etag

router = APIRouter(tags=["leads"])

IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='The lead\'s ETag as the journey gave it (`"7"`): refused with 412 when '
        "the lead has changed since.",
    ),
]


class PreconditionFailed(Problem):
    """412 with the lead's current stage and version (RFC 9457 extension members)."""

    def __init__(self, mismatch: VersionMismatch) -> None:
        super().__init__(
            412,
            "Precondition failed",
            f"If-Match does not name the lead's current version {etag(mismatch.current_version)}"
            "; read it again",
            type_="urn:funnel:problem:version-mismatch",
            errors=[{"field": "If-Match", "message": "not the lead's current version"}],
            headers={"ETag": etag(mismatch.current_version)},
        )
        self.current_stage = mismatch.current_stage
        self.current_version = mismatch.current_version

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return {
            **super().body(instance),
            "current_stage": self.current_stage,
            "current_version": self.current_version,
        }


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
async def get_journey(
    lead_id: UUID, _: Reader, runtime: Runtime, conn: Conn, response: Response
) -> dict[str, Any]:
    """A lead's current stage, owner, version (also its ETag), score and temperature now, and
    every transition with its cause."""
    context = runtime.context
    journey = await service.journey(conn, context.registry, lead_id, context.clock.now())
    if journey is None:
        raise _unknown_lead(lead_id)
    response.headers["ETag"] = etag(journey["version"])
    return journey


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_stage: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    actor: str | None = Field(
        default=None,
        max_length=200,
        description="Ignored: the actor is the name of the calling API key.",
    )
    funnel_version: int | None = Field(
        default=None, ge=1, description="Move the lead to this (newer, published) version."
    )


@router.post("/v1/leads/{lead_id}/transitions", status_code=201)
async def move_lead(
    lead_id: UUID,
    body: TransitionRequest,
    caller: Writer,
    runtime: Runtime,
    if_match: IfMatchHeader = None,
) -> dict[str, Any]:
    """Move a lead by hand, with a reason; 409 with the reason when its funnel does not allow
    it; 412 when If-Match is not the lead's current version."""
    command = MoveCommand.manual(
        lead_id,
        body.to_stage,
        reason=body.reason,
        actor=caller.name,
        at=runtime.context.clock.now(),
        funnel_version=body.funnel_version,
    )
    try:
        move = await service.move_lead(
            runtime.transactions, runtime.context.registry, command, IfMatch.parse(if_match)
        )
    except service.UnknownLead:
        raise _unknown_lead(lead_id) from None
    except VersionMismatch as mismatch:
        raise PreconditionFailed(mismatch) from None
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


class OwnerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str | None = Field(
        max_length=200, description="The name of a configured API key; null releases the lead."
    )


@router.put("/v1/leads/{lead_id}/owner")
async def put_owner(
    lead_id: UUID,
    body: OwnerRequest,
    caller: Writer,
    names: KeyNames,
    runtime: Runtime,
    response: Response,
    if_match: IfMatchHeader = None,
) -> dict[str, Any]:
    """Give the lead an owner (a key's name) or release it (null); 412 when If-Match is not
    the lead's current version."""
    if body.owner is not None and body.owner not in names:
        raise invalid("owner", "not the name of a configured API key", title="Unknown owner")
    command = OwnerCommand(lead_id, body.owner, caller.name, runtime.context.clock.now())
    try:
        done = await service.assign_owner(
            runtime.transactions, runtime.context.registry, command, IfMatch.parse(if_match)
        )
    except service.UnknownLead:
        raise _unknown_lead(lead_id) from None
    except VersionMismatch as mismatch:
        raise PreconditionFailed(mismatch) from None
    response.headers["ETag"] = etag(done.version)
    return {
        "lead_id": str(lead_id),
        "owner": done.owner,
        "version": done.version,
        "changed": done.changed,
    }
