"""Meta Lead Ads forms: which of our forms each one feeds, and how its questions map (pure).

One Meta Page runs many lead forms, each with its own questions. A mapping routes a Meta
form's leads to one of our forms (and so its funnel) and names its questions in our fields;
a Meta form without one joins the service-wide form (`FUNNEL_META_FORM_ID`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from lead_intake.forms import ID_PATTERN, check_field_map
from lead_intake.text_rules import StorableText

META_FORM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class MetaFormIn(StorableText):
    """Where a Meta lead form's leads go."""

    model_config = ConfigDict(extra="forbid")

    form_id: str = Field(pattern=ID_PATTERN, description="Our form (and so funnel) they join.")
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="A Meta question's name (field_data[].name) -> our field name; these win "
        "over the form's own field_map.",
    )

    @field_validator("field_map")
    @classmethod
    def _mapping(cls, value: dict[str, str]) -> dict[str, str]:
        return check_field_map(value)


class MetaForm(MetaFormIn):
    meta_form_id: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


def meta_form_id(notice: Mapping[str, Any]) -> str | None:
    """The Meta form a `leadgen` change names (`value.form_id`), if it names one."""
    value = notice.get("form_id")
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def field_map_for(form_map: Mapping[str, str], mapping: MetaForm | None) -> dict[str, str]:
    """The Meta form's own names first, then the form's."""
    return {**form_map, **(mapping.field_map if mapping is not None else {})}
