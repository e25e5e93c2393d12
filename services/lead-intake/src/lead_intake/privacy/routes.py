"""Erasure: forget a person here and tell every other service to do the same; data keys for
the services that must read the personal data sealed in events."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from lead_intake.deps import KeyReader, Runtime, Writer
from lead_intake.privacy import service
from lead_intake.privacy.models import DataKeyOut, DataKeysIn, DataKeysOut, ErasureIn, ErasureOut

router = APIRouter(tags=["privacy"])


@router.post("/v1/erasure-requests", status_code=202)
async def request_erasure(body: ErasureIn, runtime: Runtime, principal: Writer) -> ErasureOut:
    """Erase a person by email (or phone): their data and key here now, lead.erased for others."""
    return await service.erase(runtime.transactions, body, requested_by=principal.name)


@router.get(
    "/v1/leads/{lead_id}/data-key",
    responses={404: {"description": "No such lead"}, 410: {"description": "The lead was erased"}},
)
async def get_data_key(
    lead_id: UUID, runtime: Runtime, response: Response, _: KeyReader
) -> DataKeyOut:
    """The key that opens a lead's sealed personal data; 410 once the person is erased."""
    response.headers["Cache-Control"] = "no-store"
    return await service.data_key(runtime, lead_id)


@router.post("/v1/data-keys/lookup")
async def look_up_data_keys(
    body: DataKeysIn, runtime: Runtime, response: Response, _: KeyReader
) -> DataKeysOut:
    """The keys of up to 500 leads in one call (a contact resolver's batch): each lead asked
    for is in `keys`, `erased` or `unknown`."""
    response.headers["Cache-Control"] = "no-store"
    return await service.data_keys(runtime, body.lead_ids)
