"""The people workspace: a person read whole, people found, a person corrected.

The contact details (email, phone, names, custom fields) are in an answer only for a key
with pii:read as well: without it they are left out, not refused.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from funnel_servicekit.auth import Principal, Scope
from lead_intake.deps import PeopleReader, Runtime, Writer
from lead_intake.people import service
from lead_intake.people.models import (
    DEFAULT_PAGE,
    MAX_PAGE,
    PeoplePage,
    PersonOut,
    PersonPatch,
    page_body,
    person_body,
)

router = APIRouter(tags=["people"])
_GONE: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such lead"},
    410: {"description": "The lead was erased"},
}


def _contact(principal: Principal) -> bool:
    return Scope.PII_READ in principal.scopes


@router.get("/v1/leads", response_model=PeoplePage)
async def find_people(
    runtime: Runtime,
    principal: PeopleReader,
    lead_id: Annotated[
        list[UUID] | None,
        Query(
            alias="id",
            max_length=MAX_PAGE,
            description="Lead ids (repeat the parameter, up to 200): these people, e.g. to "
            "name the leads of a list another service answered. Unknown and erased ones are "
            "left out.",
        ),
    ] = None,
    email: Annotated[str | None, Query(max_length=320, description="An exact email.")] = None,
    phone: Annotated[
        str | None, Query(max_length=40, description="An exact phone, with +country code.")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The start (2+ characters) of a first name, last name or email; "
            "case and accents ignored; several words: people matching each.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    after: Annotated[UUID | None, Query(description="The `next_after` of the page before.")] = None,
) -> JSONResponse:
    """Find people by lead ids, by exact email or phone, or by the start of a name or email
    (`q`); exactly one of them."""
    search = service.search_of(
        runtime.context.search_index,
        ids=lead_id,
        email=email,
        phone=phone,
        q=q,
        after=after,
        limit=limit,
    )
    page = await service.find_people(runtime.pool, search)
    return JSONResponse(page_body(page, contact=_contact(principal)))


@router.get("/v1/leads/{lead_id}", response_model=PersonOut, responses=_GONE)
async def get_person(lead_id: UUID, runtime: Runtime, principal: PeopleReader) -> JSONResponse:
    """A person: contact details (with pii:read), consent, touchpoints, submissions."""
    person = await service.person(runtime.pool, lead_id)
    return JSONResponse(person_body(person, contact=_contact(principal)))


@router.patch("/v1/leads/{lead_id}", response_model=PersonOut, responses=_GONE)
async def correct_person(
    lead_id: UUID, body: PersonPatch, runtime: Runtime, principal: Writer
) -> JSONResponse:
    """Correct a person's details or consent; emits funnel.lead.updated.v2 (source manual)."""
    person = await service.correct(
        runtime.transactions,
        runtime.context.search_index,
        lead_id,
        body,
        actor=principal.name,
    )
    return JSONResponse(person_body(person, contact=_contact(principal)))
