"""A bulk import of existing contacts, and each contact as the capture takes it (pure)."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from funnel_contracts import Utm
from funnel_servicekit.problems import FieldError, field_error
from lead_intake.common.normalize import normalize_email, normalize_name, normalize_phone
from lead_intake.common.text_rules import StorableText
from lead_intake.leads.models import Submission, Touchpoint

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


def submissions_of(
    items: list[ImportedLead], phone_region: str | None
) -> tuple[list[Submission], list[FieldError]]:
    """Each contact normalized, and every field at fault (the import is all or nothing)."""
    subs: list[Submission] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        try:
            email = normalize_email(item.email)
        except ValueError as exc:
            errors.append(field_error(f"leads.{i}.email", str(exc)))
            continue
        phone = None
        if item.phone:
            try:
                phone = normalize_phone(item.phone, phone_region)
            except ValueError as exc:
                errors.append(field_error(f"leads.{i}.phone", str(exc)))
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
                touchpoint=Touchpoint(utm=item.utm, landing_page=item.landing_page),
                custom_fields=custom,
            )
        )
    return subs, errors
