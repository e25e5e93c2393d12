"""Bulk import: up to 1000 contacts in one unit of work, with their original capture time."""

from __future__ import annotations

from uuid import UUID

from funnel_servicekit.problems import invalid_fields
from funnel_servicekit.unit_of_work import UnitOfWork
from lead_intake.forms import service as forms
from lead_intake.imports.models import ImportIn, ImportOut, submissions_of
from lead_intake.leads.service import capture
from lead_intake.runtime import IntakeRuntime


async def import_leads(runtime: IntakeRuntime, body: ImportIn) -> ImportOut:
    """All of them, or none on any error; people known already are left as they are."""
    async with runtime.pool.acquire() as conn:
        form = await forms.registered_form(conn, body.form_id)
    subs, errors = submissions_of(body.leads, form.settings.default_phone_region)
    if errors:
        raise invalid_fields(errors, "Invalid import")

    async def work(uow: UnitOfWork) -> ImportOut:
        imported = existing = 0
        lead_ids: list[UUID] = []
        for sub, item in zip(subs, body.leads, strict=True):
            captured = await capture(
                uow,
                form,
                sub,
                source="import",
                captured_at=item.captured_at,
                index=runtime.context.search_index,
                update_known=False,
            )
            lead_ids.append(captured.lead_id)
            imported += captured.new_lead
            existing += not captured.new_lead
        return ImportOut(imported=imported, existing=existing, lead_ids=lead_ids)

    # Run again whole when PostgreSQL undid it (activities locking the same people).
    return await runtime.transactions.run(work)
