"""Which column of an import is which field (pure): the field names, a caller's `mapping`, and
the shipped mappings of HubSpot's and Mautic's contact exports.

A row is a flat mapping of field names to text. The fields an import knows:

- identity and contact: `email`, `phone`, `first_name`, `last_name`;
- history: `captured_at` (when the other tool captured them), `original_source`,
  `stage` and `entered_at` (the stage of the form's funnel they are in, and since when);
- the first touch: `utm_source`, `utm_medium`, `utm_campaign`, `utm_term`, `utm_content`,
  `landing_page`;
- consent: `consent` (true/false), `consent_at`, `consent_categories` (comma separated),
  `consent_text`;
- `locale`, `time_zone`;
- qualification answers: `budget`, `authority`, `need`, `timing`, or `qualification.<name>`;
- custom fields: `custom.<name>`.

A mapping's target is one of those, or `ignore` (the column is read and dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

IGNORE = "ignore"
CUSTOM = "custom."
QUALIFICATION = "qualification."
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
QUALIFICATION_FIELDS = ("budget", "authority", "need", "timing")
FIELDS: tuple[str, ...] = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "captured_at",
    "original_source",
    "stage",
    "entered_at",
    *UTM_FIELDS,
    "landing_page",
    "consent",
    "consent_at",
    "consent_categories",
    "consent_text",
    "locale",
    "time_zone",
    *QUALIFICATION_FIELDS,
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

# HubSpot's contact export (CRM > Contacts > Export), by its column titles. Columns it has that
# Funnel keeps as custom fields get a `custom.hubspot_*` name; the rest are dropped.
HUBSPOT: dict[str, str] = {
    "Record ID": "custom.hubspot_id",
    "First Name": "first_name",
    "Last Name": "last_name",
    "Email": "email",
    "Phone Number": "phone",
    "Mobile Phone Number": IGNORE,
    "Create Date": "captured_at",
    "Original Source": "original_source",
    "Original Source Drill-Down 1": IGNORE,
    "Original Source Drill-Down 2": IGNORE,
    "Lifecycle Stage": "custom.hubspot_lifecycle_stage",
    "Lead Status": "custom.hubspot_lead_status",
    "Contact owner": IGNORE,
    "Primary Associated Company ID": IGNORE,
    "Associated Company": IGNORE,
    "Company Name": "custom.company",
    "Job Title": "custom.job_title",
    "Last Activity Date": IGNORE,
    "Marketing contact status": IGNORE,
    "Preferred language": "locale",
    "Time Zone": "time_zone",
    "First Page Seen": "landing_page",
    "Last Page Seen": IGNORE,
    "Country/Region": "custom.country",
    "City": "custom.city",
}

# Mautic's contact export (Contacts > Export to CSV), by its field aliases.
MAUTIC: dict[str, str] = {
    "id": "custom.mautic_id",
    "title": IGNORE,
    "firstname": "first_name",
    "lastname": "last_name",
    "email": "email",
    "mobile": "phone",
    "phone": IGNORE,  # mobile first; map `phone` yourself when that is the number you use
    "company": "custom.company",
    "position": "custom.job_title",
    "points": "custom.mautic_points",
    "fax": IGNORE,
    "address1": IGNORE,
    "address2": IGNORE,
    "city": "custom.city",
    "state": IGNORE,
    "zipcode": IGNORE,
    "country": "custom.country",
    "preferred_locale": "locale",
    "timezone": "time_zone",
    "last_active": IGNORE,
    "attribution_date": IGNORE,
    "attribution": IGNORE,
    "website": IGNORE,
    "facebook": IGNORE,
    "foursquare": IGNORE,
    "instagram": IGNORE,
    "linkedin": IGNORE,
    "skype": IGNORE,
    "twitter": IGNORE,
    "date_added": "captured_at",
    "date_modified": IGNORE,
    "date_identified": IGNORE,
    "owner_id": IGNORE,
    "stage": IGNORE,  # Mautic's own stages; map them to the funnel's with a `mapping`
    "tags": "custom.tags",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_content": "utm_content",
    "utm_term": "utm_term",
}

PRESETS: dict[str, dict[str, str]] = {"hubspot": HUBSPOT, "mautic": MAUTIC}


class MappingInvalid(ValueError):
    """A mapping or a header the import cannot read: the field at fault and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def valid_target(target: str) -> bool:
    """Whether `target` is a field a column may be mapped to."""
    if target == IGNORE or target in FIELDS:
        return True
    for prefix in (CUSTOM, QUALIFICATION):
        if target.startswith(prefix):
            return bool(_NAME.match(target.removeprefix(prefix)))
    return False


def check_mapping(mapping: Mapping[str, str]) -> dict[str, str]:
    """A caller's mapping (column -> field), every target checked."""
    for column, target in mapping.items():
        if not isinstance(target, str) or not valid_target(target):
            raise MappingInvalid(f"mapping.{column}", f"{target!r} is not a field of an import")
    return dict(mapping)


def columns_to_fields(header: list[str], mapping: Mapping[str, str]) -> list[str]:
    """The field each column holds (`ignore` for dropped ones), in the header's order.

    A column is its mapping's target, else a field's own name (any case, spaces as
    underscores). A column that is neither is refused, naming it; so is a field two columns
    claim.
    """
    fields: list[str] = []
    seen: dict[str, str] = {}
    for column in header:
        target = mapping.get(column)
        if target is None:
            own = column.strip().lower().replace(" ", "_")
            target = own if valid_target(own) and own != IGNORE else None
        if target is None:
            raise MappingInvalid(column, "neither a field of an import nor named in the mapping")
        if target != IGNORE:
            if target in seen:
                raise MappingInvalid(column, f"{target} is already read from column {seen[target]}")
            seen[target] = column
        fields.append(target)
    if not {"email", "phone"} & set(seen):
        raise MappingInvalid("email", "no column holds the email or the phone")
    return fields
