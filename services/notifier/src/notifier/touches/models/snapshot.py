"""What the send-time rules look at for a batch of leads (pure): read once per batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from notifier.people.models import Contact
from notifier.touches.models.send_rules import LeadFacts


@dataclass
class Snapshot:
    """What the send-time rules look at for a batch of leads, read in the claiming
    transaction after the leads are locked; sends decided in the batch are added as they go."""

    now: datetime
    contacts: dict[UUID, Contact] = field(default_factory=dict)
    stages: dict[UUID, str | None] = field(default_factory=dict)
    consents: dict[UUID, dict[str, bool]] = field(default_factory=dict)
    activities: dict[UUID, dict[str, datetime]] = field(default_factory=dict)
    # Marketing touches sent or in flight: (lead, channel) -> [(playbook, touch id, when)]
    sends: dict[tuple[UUID, str], list[tuple[str, UUID, datetime]]] = field(default_factory=dict)

    def facts(self, lead_id: UUID, channel: str, playbook: str, touch_id: UUID) -> LeadFacts:
        contact = self.contacts.get(lead_id)
        sends = [s for s in self.sends.get((lead_id, channel), []) if s[1] != touch_id]
        return LeadFacts(
            reachable=contact is not None and bool(contact.email),
            stage=self.stages.get(lead_id),
            consents=self.consents.get(lead_id, {}),
            last_activity=self.activities.get(lead_id, {}),
            time_zone=contact.time_zone if contact else None,
            recent_sends=tuple(at for _, _, at in sends),
            recent_playbook_sends=tuple(at for book, _, at in sends if book == playbook),
        )

    def add_send(self, lead_id: UUID, channel: str, playbook: str, touch_id: UUID) -> None:
        self.sends.setdefault((lead_id, channel), []).append((playbook, touch_id, self.now))
