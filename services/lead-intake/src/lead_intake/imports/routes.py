"""Bulk import of existing contacts, with their original capture time and source."""

from __future__ import annotations

from fastapi import APIRouter

from lead_intake.deps import Runtime, Writer
from lead_intake.imports import service
from lead_intake.imports.models import ImportIn, ImportOut

router = APIRouter(tags=["leads"])


@router.post("/v1/leads/import", status_code=202)
async def import_leads(body: ImportIn, runtime: Runtime, _: Writer) -> ImportOut:
    """Import up to 1000 contacts in one transaction: all of them, or none on any error."""
    return await service.import_leads(runtime, body)
