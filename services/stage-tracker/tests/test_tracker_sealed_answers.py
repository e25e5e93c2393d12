"""The tracker's rules on what lead and activity events say in the clear (decision 0054): a
choice as given, any other answer "*", other text of a property "*"; the words sealed."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from funnel_contracts import ActivityRecorded, LeadCapturedV2
from funnel_contracts.events.base import clear_answers, clear_properties
from funnel_contracts.events.lead import Sealed
from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.moves.models.machine import apply, capture
from stage_tracker.scoring.models.signals import signal_of

B2B = default_funnels()["b2b-sales-cycle"]
T = datetime(2026, 3, 1, tzinfo=UTC)
NOISE = Sealed(alg="A256GCM", nonce="AAAAAAAAAAAAAAAA", ciphertext="AAAA")


def _captured(answers: dict[str, str]) -> LeadCapturedV2:
    return LeadCapturedV2(
        lead_id=uuid4(),
        personal_data=NOISE,
        has_email=True,
        has_phone=False,
        submission_id=uuid4(),
        form_id="f",
        funnel_id=B2B.id,
        captured_at=T,
        qualification=clear_answers(answers),
    )


def test_free_text_answers_still_count_as_answered_and_choices_still_match() -> None:
    event = _captured(
        {
            "budget": "approved",
            "authority": "Decision-Maker",
            "need": "A CRM for Ada Lovelace's team of 12",
            "timing": "as soon as the board says yes",
        }
    )
    assert event.qualification["need"] == event.qualification["timing"] == "*"
    signal = signal_of(event, "e1")
    assert signal is not None
    outcome = capture(B2B, signal)
    assert [m.to_stage for m in outcome.moves] == ["prospecting", "qualification"]
    assert outcome.moves[1].reason == "answered budget, authority, need, timing"
    # Fit points for the choices (budget approved 20, authority decision-maker 15); the words
    # of need and timing match no fit rule, as free text never did.
    assert outcome.state.score.fit == 35


def test_a_disqualifying_choice_still_loses_the_lead() -> None:
    signal = signal_of(_captured({"budget": "none"}), "e2")
    assert signal is not None
    assert [m.to_stage for m in capture(B2B, signal).moves] == ["prospecting", "lost"]


def test_an_offline_touch_s_outcome_moves_while_its_note_stays_sealed() -> None:
    lead = capture(B2B, signal_of(_captured({}), "e3"))  # type: ignore[arg-type]
    call = ActivityRecorded(
        lead_id=uuid4(),
        activity_id=uuid4(),
        activity_type="call_logged",
        occurred_at=T,
        recorded_at=T,
        properties=clear_properties({"outcome": "verbal-yes", "text": "Ada says yes, call Fri"}),
        personal_data=NOISE,
    )
    assert call.properties == {"outcome": "verbal-yes", "text": "*"}
    signal = signal_of(call, "e4")
    assert signal is not None
    moved = apply(lead.state, B2B, signal)
    assert [m.to_stage for m in moved.moves] == ["closing"]
