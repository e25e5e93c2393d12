"""What the notifier keeps of a person (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from funnel_contracts.events import Sealed


@dataclass(frozen=True)
class Contact:
    email: str
    first_name: str | None
    locale: str | None
    time_zone: str | None


@dataclass(frozen=True)
class PendingContact:
    """A v2 lead event's sealed personal data, waiting for the lead's data key.

    The consumer records it in its inbox transaction (no network call there); the contact
    resolver fetches the key with no transaction open and stores the contact."""

    id: int
    lead_id: UUID
    event_type: str
    sealed: Sealed
    locale: str | None
    time_zone: str | None
    attempts: int
