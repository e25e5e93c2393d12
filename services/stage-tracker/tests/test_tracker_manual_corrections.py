"""A colleague correcting a person's details is not the person engaging: no signal."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from funnel_contracts import LeadUpdatedV2, Sealed
from stage_tracker.scoring.models.signals import UPDATED, signal_of

AT = datetime(2026, 11, 3, 10, tzinfo=UTC)
SEALED = Sealed(alg="A256GCM", nonce="AAAAAAAAAAAAAAAA", ciphertext="AAAA")


def _update(source: str) -> LeadUpdatedV2:
    return LeadUpdatedV2(
        lead_id=uuid4(),
        personal_data=SEALED,
        has_email=True,
        has_phone=False,
        source=source,
        updated_at=AT,
    )


def test_a_manual_correction_carries_no_signal_but_a_new_form_post_does() -> None:
    assert signal_of(_update("manual"), "e1") is None
    posted = signal_of(_update("form"), "e2")
    assert posted is not None
    assert (posted.kind, posted.occurred_at) == (UPDATED, AT)
