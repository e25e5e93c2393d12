"""The sealed part every lead event carries: how to reach the person and their custom fields
(pure). Captures add the pages, the visitor id and the answers to it."""

from __future__ import annotations

from typing import Protocol

from funnel_contracts.sealed import PersonalData


class ContactDetails(Protocol):
    """A person's contact details as a lead, a correction or a merge's survivor holds them."""

    @property
    def email(self) -> str | None: ...

    @property
    def phone(self) -> str | None: ...

    @property
    def first_name(self) -> str | None: ...

    @property
    def last_name(self) -> str | None: ...


def contact_data(person: ContactDetails, custom_fields: dict[str, str]) -> PersonalData:
    return PersonalData(
        email=person.email,
        phone=person.phone,
        first_name=person.first_name,
        last_name=person.last_name,
        custom_fields=custom_fields,
    )
