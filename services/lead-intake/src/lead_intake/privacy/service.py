"""Erasure (a person forgotten here, and lead.erased for the others); a person's data key."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from uuid import UUID, uuid4

from funnel_contracts import LeadErased
from funnel_contracts.sealed import key_to_text
from funnel_servicekit.problems import field_problem, not_found
from funnel_servicekit.unit_of_work import Transactions
from lead_intake.activities import store as activities_store
from lead_intake.leads import store as leads_store
from lead_intake.privacy import store
from lead_intake.privacy.models import DataKeyOut, DataKeysOut, ErasureIn, ErasureOut
from lead_intake.runtime import IntakeRuntime


async def erase(transactions: Transactions, body: ErasureIn, *, requested_by: str) -> ErasureOut:
    """The person's data and key removed in one unit of work, with a lead.erased per lead."""
    request_id = uuid4()
    now = datetime.now(UTC)
    async with transactions() as uow:
        conn = uow.conn
        if body.email is not None:
            lead_ids = await leads_store.lead_ids_by_email(conn, body.email)
        else:
            assert body.phone is not None
            lead_ids = await store.lead_ids_by_phone_alone(conn, body.phone)
        # A person's leads merged into one (or into another) are all theirs.
        lead_ids = await store.with_merged(conn, lead_ids)
        await store.erase_leads(conn, lead_ids)
        # Same transaction: once the erasure commits, no key exists that opens what the
        # topics still hold of this person.
        await store.shred(conn, lead_ids)
        if body.email is not None:
            await activities_store.forget_pending_email(conn, body.email)  # what waited for it
        identity = body.email or body.phone or ""
        await store.record_erasure(
            conn, request_id, hashlib.sha256(identity.encode()).hexdigest(), lead_ids, requested_by
        )
        for lead_id in lead_ids:
            await uow.emit(LeadErased(lead_id=lead_id, request_id=request_id, erased_at=now))
    return ErasureOut(request_id=request_id, erased_leads=lead_ids)


async def data_key(runtime: IntakeRuntime, lead_id: UUID) -> DataKeyOut:
    """The key that opens a lead's sealed personal data; 410 once erased, 404 unknown."""
    async with runtime.pool.acquire() as conn:
        found = await store.data_key(conn, lead_id)
    if found is not None and found[0]:
        raise field_problem(
            410,
            "Lead erased",
            "the person was erased; their data key is destroyed",
            type_="urn:funnel:problem:erased",
            field="lead_id",
            message="erased",
        )
    if found is None or found[1] is None:
        raise not_found("lead", "lead_id", lead_id)
    return DataKeyOut(lead_id=lead_id, key=key_to_text(found[1]))


async def data_keys(runtime: IntakeRuntime, lead_ids: list[UUID]) -> DataKeysOut:
    """`data_key` for a batch of leads (a contact resolver's) in one statement: each lead in
    `keys`, `erased` or `unknown`, in the order asked, each once."""
    asked = list(dict.fromkeys(lead_ids))
    async with runtime.pool.acquire() as conn:
        found = await store.data_keys(conn, asked)
    out = DataKeysOut(keys=[], erased=[], unknown=[])
    for lead_id in asked:
        erased, key = found.get(lead_id, (False, None))
        if erased:
            out.erased.append(lead_id)
        elif key is None:
            out.unknown.append(lead_id)
        else:
            out.keys.append(DataKeyOut(lead_id=lead_id, key=key_to_text(key)))
    return out
