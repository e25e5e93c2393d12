"""Merging two leads that are one person (a merge is never undone)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from lead_intake.deps import Runtime, Writer
from lead_intake.leads import service

router = APIRouter(tags=["leads"])


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other_lead_id: UUID


@router.post("/v1/leads/{lead_id}/merge")
async def merge_leads(
    lead_id: UUID, body: MergeIn, runtime: Runtime, caller: Writer
) -> dict[str, Any]:
    """Fold two leads of one person into the older one, for good: 422 for a lead merged into
    itself, 404 for an unknown one, 410 when either is erased, 409 when either is merged."""
    merged = await service.merge_leads(
        runtime.transactions, lead_id, body.other_lead_id, actor=caller.name,
        index=runtime.context.search_index,
    )  # fmt: skip
    return {"lead_id": str(merged.lead_id), "merged_lead_id": str(merged.merged_lead_id)}
