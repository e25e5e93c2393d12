"""Bulk import of existing contacts, with their original capture time and source."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from funnel_contracts import Utm
from funnel_servicekit.auth import Principal, require_scopes
from lead_intake.api.context import FormId, intake, invalid, unknown_form
from lead_intake.capture import capture
from lead_intake.normalize import normalize_email, normalize_name, normalize_phone
from lead_intake.store import forms as forms_store
from lead_intake.submission import Submission, Touch
from lead_intake.text_rules import StorableText

router = APIRouter(tags=["leads"])
MAX_IMPORT = 1000


class ImportedLead(BaseModel):
    """One contact from another tool."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    captured_at: AwareDatetime = Field(description="When the other tool captured them.")
    original_source: str | None = Field(
        default=None, max_length=100, description="Where they came from, e.g. the old tool."
    )
    utm: Utm = Field(default_factory=Utm)
    landing_page: str | None = Field(default=None, max_length=2048)
    custom_fields: dict[str, str] = Field(default_factory=dict, max_length=50)


class ImportIn(StorableText):
    model_config = ConfigDict(extra="forbid")

    form_id: str = Field(description="The form (and so the funnel) the contacts belong to.")
    leads: list[ImportedLead] = Field(min_length=1, max_length=MAX_IMPORT)


class ImportOut(BaseModel):
    imported: int = Field(description="New leads (each emitted funnel.lead.captured).")
    existing: int = Field(description="People known already: left as they are.")
    lead_ids: list[UUID]


@router.post("/v1/leads/import", status_code=202)
async def import_leads(
    body: ImportIn,
    request: Request,
    _: Annotated[Principal, Depends(require_scopes("leads:write"))],
) -> ImportOut:
    """Import up to 1000 contacts in one transaction: all of them, or none on any error."""
    ctx = intake(request)
    form_id: FormId = body.form_id
    async with ctx.pool.acquire() as conn:
        form = await forms_store.get_form(conn, form_id)
    if form is None:
        raise unknown_form(form_id)
    subs: list[Submission] = []
    errors: list[dict[str, str]] = []
    for i, item in enumerate(body.leads):
        try:
            email = normalize_email(item.email)
        except ValueError as exc:
            errors.append({"field": f"leads.{i}.email", "message": str(exc)})
            continue
        phone = None
        if item.phone:
            try:
                phone = normalize_phone(item.phone, form.settings.default_phone_region)
            except ValueError as exc:
                errors.append({"field": f"leads.{i}.phone", "message": str(exc)})
                continue
        custom = dict(item.custom_fields)
        if item.original_source:
            custom["original_source"] = item.original_source
        subs.append(
            Submission(
                email=email,
                phone=phone,
                first_name=normalize_name(item.first_name) if item.first_name else None,
                last_name=normalize_name(item.last_name) if item.last_name else None,
                touch=Touch(utm=item.utm, landing_page=item.landing_page),
                custom_fields=custom,
            )
        )
    if errors:
        raise invalid(errors, "Invalid import")
    imported = existing = 0
    lead_ids: list[UUID] = []
    async with ctx.pool.acquire() as conn, conn.transaction():
        for sub, item in zip(subs, body.leads, strict=True):
            captured = await capture(
                conn,
                ctx.outbox,
                form,
                sub,
                source="import",
                captured_at=item.captured_at,
                update_known=False,
            )
            lead_ids.append(captured.lead_id)
            imported += captured.new_lead
            existing += not captured.new_lead
    return ImportOut(imported=imported, existing=existing, lead_ids=lead_ids)
