"""One reader for every version of the lead events a consumer meets on funnel.lead-events.

v1 records (personal data in the clear) stay on the topic for as long as it is retained, and
v2 records carry it sealed; captured and updated differ in a few field names. Consumers read
`lead_details(event)` and never branch on the version themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from funnel_contracts.events import (
    Consent,
    EventData,
    LeadCaptured,
    LeadCapturedV2,
    LeadUpdated,
    LeadUpdatedV2,
    Sealed,
    Utm,
)
from funnel_contracts.sealed import PersonalData, unseal

LEAD_DETAIL_EVENTS: tuple[type[EventData], ...] = (
    LeadCaptured,
    LeadUpdated,
    LeadCapturedV2,
    LeadUpdatedV2,
)


@dataclass(frozen=True)
class LeadDetails:
    """What a captured or updated lead event says, whatever its version."""

    lead_id: UUID
    event_type: str
    #: True for a new person (captured), False for a known one (updated).
    new: bool
    #: When it was captured or updated.
    at: datetime
    submission_id: UUID | None
    form_id: str | None
    funnel_id: str | None
    #: The touchpoint's UTM: the first touch's for a capture, the last touch's for an update.
    utm: Utm
    landing_page: str | None
    referrer: str | None
    visitor_id: str | None
    source: str
    consent: Consent | None
    qualification: dict[str, str] = field(default_factory=dict)
    locale: str | None = None
    time_zone: str | None = None
    #: v1 only: the personal data as it was written, in the clear.
    clear: PersonalData | None = None
    #: v2 only: the personal data sealed with the lead's data key.
    sealed: Sealed | None = None
    #: Consent categories withdrawn by this update (a correction made by hand).
    consent_withdrawn: tuple[str, ...] = ()
    #: An imported contact's stage in its funnel, and since when (captured v2 only).
    imported_stage: str | None = None
    stage_entered_at: datetime | None = None
    #: A test lead (captured v2 only): left out of every report, playbook and funnel count.
    test: bool = False

    def person(self, key: bytes | None) -> PersonalData | None:
        """The personal data: v1's as written; v2's unsealed with `key` (None: erased)."""
        if self.clear is not None:
            return self.clear
        if self.sealed is None or key is None:
            return None
        return unseal(self.sealed, key=key, lead_id=self.lead_id, event_type=self.event_type)

    @property
    def needs_key(self) -> bool:
        """Whether reading the personal data takes the lead's data key."""
        return self.sealed is not None


def lead_details(event: EventData) -> LeadDetails | None:
    """The details of a captured or updated lead event; None for any other event."""
    if isinstance(event, LeadCaptured | LeadCapturedV2):
        new, at, utm = True, event.captured_at, event.utm
    elif isinstance(event, LeadUpdated | LeadUpdatedV2):
        new, at, utm = False, event.updated_at, event.last_touch_utm
    else:
        return None
    clear = None
    if isinstance(event, LeadCaptured | LeadUpdated):
        clear = PersonalData(
            email=event.email,
            phone=event.phone,
            first_name=event.first_name,
            last_name=event.last_name,
            custom_fields=dict(event.custom_fields),
        )
    return LeadDetails(
        lead_id=event.lead_id,
        event_type=event.event_type,
        new=new,
        at=at,
        submission_id=event.submission_id,
        form_id=event.form_id,
        funnel_id=event.funnel_id,
        utm=utm,
        landing_page=event.landing_page,
        referrer=event.referrer,
        visitor_id=event.visitor_id,
        source=event.source,
        consent=event.consent,
        qualification=dict(event.qualification),
        locale=event.locale,
        time_zone=event.time_zone,
        clear=clear,
        sealed=event.personal_data if isinstance(event, LeadCapturedV2 | LeadUpdatedV2) else None,
        consent_withdrawn=event.consent_withdrawn if isinstance(event, LeadUpdatedV2) else (),
        imported_stage=event.imported_stage if isinstance(event, LeadCapturedV2) else None,
        stage_entered_at=event.stage_entered_at if isinstance(event, LeadCapturedV2) else None,
        test=event.test if isinstance(event, LeadCapturedV2) else False,
    )
